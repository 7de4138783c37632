"""Ingest: GPU samples through Kafka into ClickHouse on this machine (broker and warehouse here).

1. Core: decode + check + flatten + window, per GPU sample, in process.
2. Consumer overhead: faust per event, faust ``take`` batches, plain aiokafka batches.
3. Drain: a backlog of node samples through a ``gpufleet ingest`` worker into the raw table.
4. Live: a publisher at a fixed rate; p50/p99 from a sample's timestamp to queryable.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

from bench.ingest_faust import aiokafka_rate, faust_rate
from bench.ingest_load import Fleet, LivePoller, publish_backlog, publish_live, raw_count
from bench.report import Result
from gpufleet.bus import topic
from gpufleet.config import describe
from gpufleet.contracts import decoder_for
from gpufleet.localkafka import LocalKafka, free_port
from gpufleet.topics import create_topics
from services.ingest.config import IngestSettings
from services.ingest.core import Ingest, Params, new_sample_columns

AREA = "ingest"
GPUS = 8
PARTITIONS = 4


def run(quick: bool) -> list[Result]:
    results = [_core(20_000 if quick else 100_000)]
    with _stack() as (bootstrap, ch_url):
        results += asyncio.run(_on_stack(bootstrap, ch_url, quick))
    return results


def _core(n_msgs: int) -> Result:
    fleet = Fleet("core", nodes=100, gpus=GPUS)
    raws = [fleet.encoded(i, time.time()) for i in range(n_msgs)]
    core = Ingest(Params())
    decode = decoder_for("gpu.samples").decode
    cols = new_sample_columns()
    start = time.perf_counter()
    now = time.time()
    for i, raw in enumerate(raws):
        msg = decode(raw)
        if core.sample_reason(msg, now) is None:
            core.add_sample(0, msg, i, cols)
    core.close_windows(0)
    per = (time.perf_counter() - start) / (n_msgs * GPUS)
    return Result(AREA, "core: decode+check+rows+windows per GPU sample", per * 1e6, "µs",
                  note=f"{1 / per:,.0f} GPU-samples/s on one core")


@contextlib.contextmanager
def _stack() -> Iterator[tuple[str, str]]:
    from services.warehouse import testing

    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        broker = LocalKafka(data=Path(tmp) / "kafka", port=free_port(),
                            controller_port=free_port())
        broker.start()
        port = free_port()
        proc = testing.start_warehouse(Path(tmp) / "warehouse", port)
        try:
            testing.migrated(port)
            yield broker.bootstrap, testing.url(port)
        finally:
            testing.stop_warehouse(proc)
            broker.stop()


async def _fresh(bootstrap: str, ch_url: str) -> IngestSettings:
    """Settings with topics of their own, so one phase never reads another's samples."""
    settings = IngestSettings(kafka_bootstrap=bootstrap, clickhouse_url=ch_url,
                              topic_prefix=f"b{uuid.uuid4().hex[:6]}", ingest_ops_port=0,
                              batch_max_rows=50_000, batch_within_s=1.0)
    await create_topics(settings, replication_factor=1, partitions=PARTITIONS)
    return settings


async def _on_stack(bootstrap: str, ch_url: str, quick: bool) -> list[Result]:
    results = await _overhead(await _fresh(bootstrap, ch_url), 10_000 if quick else 40_000)
    results.append(await _drain(await _fresh(bootstrap, ch_url), ch_url,
                                8_000 if quick else 60_000))
    for rate in (40_000,) if quick else (100_000, 40_000):
        results += await _live(await _fresh(bootstrap, ch_url), ch_url, rate,
                               20 if quick else 40)
    return results


async def _overhead(settings: IngestSettings, n: int) -> list[Result]:
    fleet = Fleet("over", nodes=50, gpus=GPUS)
    name = topic(settings, "gpu.samples")
    await publish_backlog(settings, fleet, n, time.time() - 600)
    rates = {
        "faust, per event": await faust_rate(settings.kafka_bootstrap, name, n, None),
        "faust, take(2000)": await faust_rate(settings.kafka_bootstrap, name, n, 2000),
        "aiokafka, getmany": await aiokafka_rate(settings.kafka_bootstrap, name, n),
    }
    return [Result(AREA, f"consume+decode: {k}", v * GPUS, "GPU-samples/s",
                   note=f"{v:,.0f} node msgs/s, {1e6 / v:.0f} µs per msg")
            for k, v in rates.items()]


@contextlib.asynccontextmanager
async def _worker(settings: IngestSettings, group: str) -> AsyncIterator[None]:
    env = {**os.environ, **{k: str(v) for k, v in describe(settings).items()},
           "GPUFLEET_CLICKHOUSE_URL": settings.clickhouse_url, "GPUFLEET_INGEST_GROUP_ID": group}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.ingest", "--workers", "1", env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    try:
        yield
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 60)


async def _drain(settings: IngestSettings, ch_url: str, n_msgs: int) -> Result:
    fleet = Fleet("drain", nodes=200, gpus=GPUS)
    await publish_backlog(settings, fleet, n_msgs, time.time() - 900)
    want = n_msgs * GPUS
    async with _worker(settings, "bench-drain"):
        first = last = 0.0
        got = 0
        deadline = time.monotonic() + 600
        while got < want and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            got = await asyncio.to_thread(raw_count, ch_url, "drain-")
            if got and not first:
                first = time.monotonic()
            last = time.monotonic()
    rate = got / max(last - first, 1e-3)
    return Result(AREA, "drain: backlog through 1 worker into gpu_samples", rate,
                  "GPU-samples/s", aim="100,000",
                  note=f"{got:,} of {want:,} rows, {PARTITIONS} partitions")


async def _live(settings: IngestSettings, ch_url: str, rate: int, seconds: float
                ) -> list[Result]:
    """Publish ``rate`` GPU-samples/s for ``seconds``; how late do they become queryable?"""
    prefix = f"live{rate // 1000}k"
    fleet = Fleet(prefix, nodes=250, gpus=GPUS)
    poller = LivePoller(ch_url, prefix + "-")
    async with _worker(settings, f"bench-{prefix}"):
        await asyncio.sleep(3)
        sent, _ = await asyncio.gather(
            publish_live(settings, fleet, rate / GPUS, seconds),
            poller.run(seconds + 15))
    delays = poller.delays()
    what = f"live at {rate // 1000}k/s asked"
    return [
        Result(AREA, f"{what}: GPU-samples/s published", sent[1] * GPUS, "GPU-samples/s",
               aim="100,000",
               note=f"{poller.rows:,} of {sent[0] * GPUS:,} rows queryable within 15 s after"),
        Result(AREA, f"{what}: delay sample ts -> queryable, p50", delays[0], "s"),
        Result(AREA, f"{what}: delay sample ts -> queryable, p99", delays[1], "s", aim="< 5"),
    ]
