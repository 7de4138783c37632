"""The service as operators run it: ``gpufleet api`` in its own process, and its ops routes."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import aiohttp
import pytest

from gpufleet.config import BusSettings
from gpufleet.localkafka import free_port

from .builders import make_node
from .conftest import ADMIN, RunningApi, auth

pytestmark = pytest.mark.integration


async def test_metrics_and_readiness(shared_api: RunningApi) -> None:
    await shared_api.publish("gpu.samples", make_node("ops-node").gpus(1).sample())
    await shared_api.wait_for("/api/v1/nodes/ops-node", lambda b: b["gpus"])
    await shared_api.client.post("/api/v1/jobs", headers=auth(ADMIN), json={"tenant": "x"})
    ready = await shared_api.client.get("/readyz")
    assert ready.status == 200, await ready.text()
    assert (await ready.json())["checks"] == {"kafka": True, "live_feed": True, "warehouse": True}
    text = await (await shared_api.client.get("/metrics")).text()
    for needle in ('gpufleet_api_requests_total{route="/api/v1/nodes/{node}",status="200"}',
                   'gpufleet_api_messages_in_total{topic="gpu.samples"}',
                   'gpufleet_api_messages_out_total{kind="SubmitJob",topic="jobs.requests"} 1',
                   'gpufleet_api_consumer_lag{partition="0",topic="gpu.samples"} 0',
                   "gpufleet_api_request_seconds_bucket"):
        assert needle in text, needle


async def test_gpufleet_api_serves_and_stops_on_sigterm(bus: BusSettings,
                                                        warehouse_url: str) -> None:
    port = free_port()
    env = {**os.environ, "GPUFLEET_KAFKA_BOOTSTRAP": bus.kafka_bootstrap,
           "GPUFLEET_TOPIC_PREFIX": bus.topic_prefix, "GPUFLEET_API_PORT": str(port),
           "GPUFLEET_CLICKHOUSE_URL": warehouse_url}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gpufleet.cli", "api", env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(200):
                try:
                    async with http.get(f"http://127.0.0.1:{port}/readyz") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    pass
                await asyncio.sleep(0.1)
            async with http.get(f"http://127.0.0.1:{port}/") as r:
                assert r.status == 200
                assert "gpu heat map" in (await r.text()).lower()
            async with http.get(f"http://127.0.0.1:{port}/api/v1/stream") as stream:
                await stream.content.readuntil(b"\n\n")  # a dashboard is watching
                proc.send_signal(signal.SIGTERM)
                assert await asyncio.wait_for(proc.wait(), 20) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.stderr is not None
    log = (await proc.stderr.read()).decode()
    assert f"dashboard on http://127.0.0.1:{port}/" in log


async def test_gpufleet_api_says_why_when_kafka_is_unreachable() -> None:
    env = {**os.environ, "GPUFLEET_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}",
           "GPUFLEET_API_PORT": str(free_port())}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gpufleet.cli", "api", env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 1
    assert "cannot start" in err.decode()


async def test_gpufleet_api_refuses_to_listen_beyond_loopback_without_tokens() -> None:
    env = {k: v for k, v in os.environ.items() if k != "GPUFLEET_API_TOKENS"}
    env |= {"GPUFLEET_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}",
            "GPUFLEET_API_HOST": "0.0.0.0", "GPUFLEET_API_PORT": str(free_port())}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gpufleet.cli", "api", env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    lines = err.decode().strip().splitlines()
    assert proc.returncode == 2
    assert len(lines) == 1 and "refusing to listen on 0.0.0.0" in lines[0], lines


async def test_a_dying_live_feed_stops_the_api(bus: BusSettings, warehouse_url: str,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from gpufleet.bus import make_producer, publish
    from gpufleet.runner import TaskDied
    from services.api.__main__ import serve
    from services.api.state import LiveState

    from .conftest import api_settings

    # A message that the state fails on is dead-lettered and the feed goes on; a fault of the
    # feed itself (here its periodic clean-up) kills the task, and with it the process.
    seen: list[object] = []
    original = LiveState.apply

    def apply(self: LiveState, msg: object) -> None:
        seen.append(getattr(msg, "node", None))
        original(self, msg)

    def expire_orphans(self: LiveState) -> None:
        if "poison-node" in seen:
            raise RuntimeError("a bug in the live feed")

    monkeypatch.setattr(LiveState, "apply", apply)
    monkeypatch.setattr(LiveState, "expire_orphans", expire_orphans)
    settings = api_settings(bus, clickhouse_url=warehouse_url, api_port=free_port())
    stop = asyncio.Event()
    serving = asyncio.create_task(serve(settings, stop))
    producer = make_producer(bus)
    await producer.start()
    try:
        await asyncio.sleep(1)
        await publish(producer, bus, "gpu.samples", make_node("poison-node").gpus(1).sample())
        with pytest.raises(ExceptionGroup) as stopped:
            await asyncio.wait_for(serving, 60)
        assert stopped.group_contains(TaskDied, match="background task ended")
    finally:
        await producer.stop()
        stop.set()
        if not serving.done():
            await asyncio.wait_for(serving, 30)
