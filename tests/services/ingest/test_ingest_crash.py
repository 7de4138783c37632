"""Integration: a worker killed with SIGKILL mid-batch and restarted leaves exactly the rows
that were published, no fewer and no more."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from ingest_builders import make_sample, unique

from gpufleet.bus import make_producer, topic
from gpufleet.config import describe
from gpufleet.contracts import encode
from services.ingest.config import IngestSettings

pytestmark = pytest.mark.integration

NODES, TICKS, GPUS = 5, 300, 8
ROWS = NODES * TICKS * GPUS
T = float(int(time.time() // 60 * 60) - 7200)


async def publish_fleet(settings: IngestSettings, prefix: str) -> None:
    producer = make_producer(settings, linger_ms=20)
    await producer.start()
    try:
        futures = []
        for tick in range(TICKS):
            for n in range(NODES):
                b = make_sample(f"{prefix}-{n}").at(T + tick)
                for g in range(GPUS):
                    b.gpu(g, float((tick + g) % 100), energy_mj=tick * 1000)
                node = f"{prefix}-{n}".encode()
                futures.append(await producer.send(topic(settings, "gpu.samples"),
                                                   encode(b.build()), key=node))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def spawn(settings: IngestSettings, log: Path) -> asyncio.subprocess.Process:
    env = {**os.environ, **{k: str(v) for k, v in describe(settings).items()}}
    env["GPUFLEET_CLICKHOUSE_URL"] = settings.clickhouse_url
    with open(log, "ab") as f:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "services.ingest", "--workers", "1", env=env,
            stdout=asyncio.subprocess.DEVNULL, stderr=f)


async def kill(proc: asyncio.subprocess.Process, sig: int = signal.SIGKILL) -> int:
    if proc.returncode is None:
        proc.send_signal(sig)
    return await asyncio.wait_for(proc.wait(), 30)


def counts(ch: Any, prefix: str) -> tuple[int, int, int, int, int]:
    raw = ch.query("SELECT count(), uniqExact(node, gpu, ts) FROM gpu_samples "
                   f"WHERE startsWith(node, '{prefix}')").result_rows[0]
    util = ch.query("SELECT count(), uniqExact(node, gpu, window_start), sum(energy_mj) "
                    f"FROM gpu_util_1m WHERE startsWith(node, '{prefix}')").result_rows[0]
    return int(raw[0]), int(raw[1]), int(util[0]), int(util[1]), int(util[2])


async def test_sigkill_mid_batch_then_restart_leaves_exact_rows(
        settings: IngestSettings, ch: Any, tmp_path: Path) -> None:
    prefix = unique("crash")
    s = IngestSettings(**{**{f: getattr(settings, f) for f in settings.__struct_fields__},
                          "batch_max_rows": 400, "ingest_session_timeout_ms": 6000})
    await publish_fleet(s, prefix)
    log = tmp_path / "worker.log"
    first = await spawn(s, log)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            raw = (await asyncio.to_thread(counts, ch, prefix))[0]
            if raw > 0:
                break
            await asyncio.sleep(0.02)
        await kill(first)
        assert 0 < raw < ROWS, f"kill came too late or never: {raw} rows; {log.read_text()}"
    finally:
        await kill(first)
    second = await spawn(s, log)
    try:
        closed_windows = NODES * GPUS * (TICKS // 60 - 1)  # the last minute stays open
        # the counter grows 1000 mJ a tick: each GPU's closed windows hold every interval
        # from tick 0 to the last tick before the open minute, however the restart cut them
        energy = NODES * GPUS * 1000 * (TICKS // 60 * 60 - 60 - 1)
        expected = (ROWS, ROWS, closed_windows, closed_windows, energy)
        deadline = time.monotonic() + 90
        got = (0, 0, 0, 0, 0)
        while time.monotonic() < deadline and got != expected:
            await asyncio.sleep(0.5)
            got = await asyncio.to_thread(counts, ch, prefix)
        await asyncio.sleep(2)  # and nothing more arrives after
        assert await asyncio.to_thread(counts, ch, prefix) == expected, log.read_text()[-3000:]
    finally:
        code = await kill(second, signal.SIGTERM)
    assert code == 0
