"""The telemetry service on the test broker (simulated source): samples go out and it is ready;
with no broker to reach it is not."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from gpufleet.bus import make_consumer
from gpufleet.config import BusSettings
from gpufleet.contracts import NodeSample, decoder_for
from gpufleet.localkafka import free_port
from services.telemetry.__main__ import make_source, serve
from services.telemetry.config import TelemetrySettings

pytestmark = pytest.mark.integration


async def readyz(port: int) -> tuple[int, dict[str, bool]]:
    async with aiohttp.ClientSession() as http, http.get(
            f"http://127.0.0.1:{port}/readyz") as resp:
        return resp.status, (await resp.json())["checks"]


def settings_for(bootstrap: str, prefix: str, tmp_path: Path, port: int) -> TelemetrySettings:
    return TelemetrySettings(kafka_bootstrap=bootstrap, topic_prefix=prefix, cluster="test",
                             node="n1", source="sim", interval_s=0.2, state_dir=str(tmp_path),
                             ops_host="127.0.0.1", telemetry_ops_port=port,
                             delivery_timeout_s=1)


@pytest.mark.parametrize("broker", ["up", "unreachable"])
async def test_readiness_says_whether_samples_get_out(
    bus: BusSettings, tmp_path: Path, broker: str
) -> None:
    port = free_port()
    bootstrap = bus.kafka_bootstrap if broker == "up" else f"127.0.0.1:{free_port()}"
    settings = settings_for(bootstrap, bus.topic_prefix, tmp_path, port)
    stop = asyncio.Event()
    service = asyncio.create_task(serve(settings, make_source(settings), stop))
    try:
        await asyncio.sleep(2)  # past the delivery deadline
        status, checks = await readyz(port)
        if broker == "unreachable":
            assert (status, checks) == (503, {"sender": False})
            return
        assert (status, checks) == (200, {"sender": True})
        consumer = make_consumer(bus, ["gpu.samples"], group_id=None)
        await consumer.start()
        try:
            async with asyncio.timeout(30):
                got: list[NodeSample] = []
                while not got:
                    for records in (await consumer.getmany(timeout_ms=200)).values():
                        got.extend(decoder_for("gpu.samples").decode(r.value) for r in records)
            assert got[0].node == "n1"
        finally:
            await consumer.stop()
    finally:
        stop.set()
        await service
