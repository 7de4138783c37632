"""What a run left behind: the job topics read from the start (committed records only), and
the probe samples' rows in the warehouse."""

from __future__ import annotations

import time
from typing import Any

import clickhouse_connect
import msgspec
from aiokafka import AIOKafkaConsumer, TopicPartition

from chaos.load import PROBE_PREFIX
from chaos.poison import POISON_PREFIX
from gpufleet.bus import topic
from gpufleet.config import BusSettings
from gpufleet.contracts import TOPIC_BY_NAME, JobEvent, Placement, decoder_for


async def read_topic(bus: BusSettings, name: str, timeout: float = 60.0) -> list[Any]:
    """Every committed message of a topic that decodes (poison left out), oldest first."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bus.kafka_bootstrap, group_id=None,
                                isolation_level="read_committed", enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    out: list[Any] = []
    try:
        full = topic(bus, name)
        # create_topics gave each topic its contract's partition count
        parts = [TopicPartition(full, p) for p in range(TOPIC_BY_NAME[name].partitions)]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        ends = await consumer.end_offsets(parts)
        decoder = decoder_for(name)
        deadline = time.monotonic() + timeout
        while not await _at_end(consumer, ends):
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {full} took longer than {timeout:.0f}s")
            batch = await consumer.getmany(timeout_ms=1000)
            for records in batch.values():
                for r in records:
                    if r.value is None or (r.key or b"").startswith(POISON_PREFIX.encode()):
                        continue
                    try:
                        out.append(decoder.decode(r.value))
                    except msgspec.DecodeError:
                        continue
    finally:
        await consumer.stop()
    return out


async def _at_end(consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> bool:
    for tp, end in ends.items():
        if await consumer.position(tp) < end:
            return False
    return True


async def job_history(bus: BusSettings) -> tuple[list[JobEvent], list[Placement]]:
    events = [e for e in await read_topic(bus, "jobs.events") if isinstance(e, JobEvent)
              and not e.job_id.startswith(POISON_PREFIX)]
    placements = [p for p in await read_topic(bus, "jobs.placements")
                  if isinstance(p, Placement) and not p.job.job_id.startswith(POISON_PREFIX)]
    return events, placements


def probe_rows(warehouse_url: str) -> dict[tuple[str, int], int]:
    """(node, ms) -> rows in gpu_samples, for the probe nodes."""
    client = clickhouse_connect.get_client(dsn=warehouse_url)
    try:
        rows = client.query(
            "SELECT node, toUnixTimestamp64Milli(ts) AS ms, count() FROM gpu_samples "
            f"WHERE node LIKE '{PROBE_PREFIX}%' GROUP BY node, ms").result_rows
    finally:
        client.close()
    return {(str(n), int(ms)): int(c) for n, ms, c in rows}


def warehouse_duplicates(warehouse_url: str) -> int:
    """Rows of gpu_samples beyond one per (node, gpu, ts), the probe's left out (they are
    checked one by one)."""
    client = clickhouse_connect.get_client(dsn=warehouse_url)
    try:
        total, unique = client.query(
            "SELECT count(), uniqExact(node, gpu, ts) FROM gpu_samples "
            f"WHERE node NOT LIKE '{PROBE_PREFIX}%'").result_rows[0]
    finally:
        client.close()
    return int(total) - int(unique)


def freshest(warehouse_url: str) -> dict[str, float]:
    """When each part last showed progress in the warehouse (Unix seconds; 0: never):
    probe rows (ingest), fleet rows (fleet), scheduler events (scheduler)."""
    client = clickhouse_connect.get_client(dsn=warehouse_url, connect_timeout=3,
                                           send_receive_timeout=5)
    try:
        probe, fleet = client.query(
            f"SELECT toUnixTimestamp64Milli(maxIf(ts, node LIKE '{PROBE_PREFIX}%')), "
            "toUnixTimestamp64Milli(maxIf(ts, node NOT LIKE 'chaos-%' "
            f"AND node NOT LIKE '{POISON_PREFIX}%')) FROM gpu_samples").result_rows[0]
        sched = client.query("SELECT toUnixTimestamp64Milli(max(ts)) FROM job_events "
                             "WHERE source = 'scheduler'").result_rows[0][0]
    finally:
        client.close()
    return {"ingest": probe / 1000.0, "fleet": fleet / 1000.0, "scheduler": sched / 1000.0}
