"""Integration: the real warehouse process stopped for a while under load and started again.

The worker waits for it (alive, /readyz red, the outage and the lag in /metrics, a few log
lines rather than one per try), then stores everything exactly once. What retrying cannot fix
(the warehouse refuses the credentials) stops it with one line and a non-zero exit.
"""

from __future__ import annotations

import asyncio
import re
import signal
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from ingest_builders import make_event, make_sample, unique
from test_ingest_crash import kill, spawn

from gpufleet.bus import make_producer, topic
from gpufleet.contracts import JobState, encode
from gpufleet.localkafka import free_port
from services.ingest.config import IngestSettings

pytestmark = pytest.mark.integration

NODES, GPUS, TICKS = 3, 4, 60  # per phase
OUTAGE_S = 20.0  # longer than the old retry budget (about 16 s), after which ingest exited
T = float(int(time.time() // 60 * 60) - 7200)


async def publish(settings: IngestSettings, prefix: str, phase: int) -> None:
    """TICKS ticks of samples of every node, and one job's started and succeeded."""
    producer = make_producer(settings, linger_ms=10)
    await producer.start()
    try:
        sends = []
        for tick in range(phase * TICKS, (phase + 1) * TICKS):
            for n in range(NODES):
                b = make_sample(f"{prefix}-{n}").at(T + tick)
                for g in range(GPUS):
                    b.gpu(g, float(tick % 100), energy_mj=tick * 1000)
                sends.append(await producer.send(topic(settings, "gpu.samples"),
                                                 encode(b.build()), key=f"{prefix}-{n}".encode()))
        job = f"{prefix}-job{phase}"
        for state in (JobState.STARTED, JobState.SUCCEEDED):
            ev = make_event(job).state(state).on(f"{prefix}-0", 0).at(T + phase * TICKS).build()
            sends.append(await producer.send(topic(settings, "jobs.events"), encode(ev),
                                             key=job.encode()))
        await asyncio.gather(*sends)
    finally:
        await producer.stop()


def counts(url: str, prefix: str) -> tuple[int, int, int]:
    import clickhouse_connect

    ch = clickhouse_connect.get_client(dsn=url, autogenerate_session_id=False)
    try:
        raw = ch.query("SELECT count(), uniqExact(node, gpu, ts) FROM gpu_samples "
                       f"WHERE startsWith(node, '{prefix}')").result_rows[0]
        events = ch.query("SELECT count() FROM job_events "
                          f"WHERE startsWith(job_id, '{prefix}')").result_rows[0]
    finally:
        ch.close()
    return int(raw[0]), int(raw[1]), int(events[0])


async def counts_now(url: str, prefix: str) -> tuple[int, int, int] | None:
    try:
        return await asyncio.to_thread(counts, url, prefix)
    except Exception:  # the warehouse is still starting
        return None


async def wait_counts(url: str, prefix: str, expected: tuple[int, int, int],
                      timeout: float) -> tuple[int, int, int] | None:
    got = None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and got != expected:
        await asyncio.sleep(0.5)
        got = await counts_now(url, prefix)
    return got


async def ops(port: int) -> tuple[int, dict[str, Any], str]:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{port}/readyz") as r:
            status, ready = r.status, await r.json()
        async with http.get(f"http://127.0.0.1:{port}/metrics") as r:
            metrics = await r.text()
    return status, ready, metrics


def gauge(metrics: str, name: str, labels: str = "") -> float | None:
    m = re.search(rf"^gpufleet_{name}{re.escape(labels)} (\S+)$", metrics, re.MULTILINE)
    return float(m.group(1)) if m else None


@pytest.fixture
def own_warehouse(tmp_path: Path) -> Any:
    """A warehouse of this test's own (it is stopped and started again), migrated."""
    testing = pytest.importorskip("services.warehouse.testing")
    port = free_port()
    data = tmp_path / "warehouse"

    class Own:
        url = testing.url(port)
        proc = testing.start_warehouse(data, port)

        def stop(self) -> None:
            testing.stop_warehouse(self.proc)

        def start(self) -> None:
            self.proc = testing.start_warehouse(data, port)

    own = Own()
    try:
        testing.migrated(port)
        yield own
    finally:
        own.stop()


async def test_ingest_waits_out_a_stopped_warehouse_then_stores_everything_once(
        settings: IngestSettings, own_warehouse: Any, tmp_path: Path) -> None:
    prefix = unique("outage")
    ops_port = free_port()
    s = IngestSettings(**{**{f: getattr(settings, f) for f in settings.__struct_fields__},
                          "clickhouse_url": own_warehouse.url, "ingest_ops_port": ops_port,
                          "ingest_ops_host": "127.0.0.1"})
    per_phase = (NODES * GPUS * TICKS, NODES * GPUS * TICKS, 2)
    log = tmp_path / "worker.log"
    await publish(s, prefix, 0)
    proc = await spawn(s, log)
    try:
        got = await wait_counts(s.clickhouse_url, prefix, per_phase, 60)
        assert got == per_phase, log.read_text()[-3000:]

        await asyncio.to_thread(own_warehouse.stop)
        await publish(s, prefix, 1)  # arrives while the warehouse is away
        seen_red = seen_lag = False
        deadline = time.monotonic() + OUTAGE_S
        while time.monotonic() < deadline:
            await asyncio.sleep(1)
            assert proc.returncode is None, f"ingest exited: {log.read_text()[-3000:]}"
            status, ready, metrics = await ops(ops_port)
            if status == 503 and ready["checks"]["warehouse"] is False:
                seen_red = seen_red or gauge(metrics, "ingest_warehouse_unavailable") == 1
            lag = gauge(metrics, "ingest_consumer_lag", '{partition="0",topic="gpu.samples"}')
            seen_lag = seen_lag or (lag is not None and lag >= NODES * TICKS // 2)
        assert seen_red, "never not ready with the warehouse away"
        assert seen_lag, f"no lag shown: {metrics}"
        assert (gauge(metrics, "ingest_warehouse_unavailable_seconds") or 0) > OUTAGE_S / 2

        await asyncio.to_thread(own_warehouse.start)
        expected = (2 * per_phase[0], 2 * per_phase[1], 4)
        got = await wait_counts(s.clickhouse_url, prefix, expected, 90)
        await asyncio.sleep(2)  # and nothing more arrives after
        assert await counts_now(s.clickhouse_url, prefix) == expected, log.read_text()[-3000:]
        status, ready, metrics = await ops(ops_port)
        assert status == 200 and gauge(metrics, "ingest_warehouse_unavailable") == 0, ready
    finally:
        code = await kill(proc, signal.SIGTERM)
    assert code == 0
    text = log.read_text()
    said = [ln for ln in text.splitlines() if "warehouse" in ln and "unavailable" in ln]
    assert 1 <= len(said) <= 2, said  # once at the start, at most one reminder: no flood
    assert "warehouse back after" in text and "Traceback" not in text


async def test_ingest_stops_with_one_line_when_the_warehouse_refuses_its_credentials(
        settings: IngestSettings, warehouse_url: str, tmp_path: Path) -> None:
    bad = re.sub(r"//[^@]*@", "//default:wrong-password@", warehouse_url)
    s = IngestSettings(**{**{f: getattr(settings, f) for f in settings.__struct_fields__},
                          "clickhouse_url": bad})
    log = tmp_path / "worker.log"
    proc = await spawn(s, log)
    code = await asyncio.wait_for(proc.wait(), 60)
    errors = [ln for ln in log.read_text().splitlines() if " ERROR " in ln]
    assert code == 1, log.read_text()
    assert len(errors) == 1 and "ingest stopped" in errors[0] and "516" in errors[0], errors
    assert "Traceback" not in log.read_text()
    assert "wrong-password" not in log.read_text()  # the line names the warehouse, not its secret


async def test_a_dying_job_feed_stops_the_worker(settings: IngestSettings, start_worker: Any,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from services.ingest.core import Ingest

    r = await start_worker(settings)
    deadline = time.monotonic() + 60
    while not r.worker.ready and time.monotonic() < deadline:
        await asyncio.sleep(0.1)

    def boom(self: Ingest, ev: Any) -> None:
        raise RuntimeError("a bug in handling a job event")

    monkeypatch.setattr(Ingest, "on_event", boom)
    producer = make_producer(settings)
    await producer.start()
    try:
        ev = make_event("j").on("n", 0).at(T).build()
        await producer.send_and_wait(topic(settings, "jobs.events"), encode(ev), key=b"j")
    finally:
        await producer.stop()
    with pytest.raises(BaseExceptionGroup) as caught:
        await asyncio.wait_for(r.task, 60)  # not a live worker that does nothing
    assert caught.group_contains(RuntimeError, match="a bug")
