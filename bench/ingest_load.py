"""Load for the ingest benchmark: a synthetic fleet, publishers, and a poller that sees when
rows become queryable."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import clickhouse_connect

from gpufleet.bus import make_producer, topic
from gpufleet.config import BusSettings
from gpufleet.contracts import GpuSample, NodeSample, encode

BUCKET_MS = 250


class Fleet:
    def __init__(self, prefix: str, nodes: int, gpus: int) -> None:
        self.prefix, self.nodes, self.gpus = prefix, nodes, gpus

    def node(self, i: int) -> str:
        return f"{self.prefix}-{i % self.nodes:05d}"

    def encoded(self, i: int, ts: float) -> bytes:
        gpus = [GpuSample(index=g, uuid=f"GPU-{i % self.nodes:05d}-{g}",
                          util_gpu=float((i + g * 7) % 100), util_mem=20.0,
                          mem_used_bytes=40 << 30, mem_free_bytes=40 << 30, power_mw=350_000,
                          energy_mj=1000 * i, temp_c=60, sm_clock_mhz=1980, mem_clock_mhz=2619,
                          throttle_reasons=0) for g in range(self.gpus)]
        return encode(NodeSample(cluster="bench", node=self.node(i), ts=ts, gpus=gpus))


async def publish_backlog(settings: BusSettings, fleet: Fleet, n: int, t0: float) -> None:
    """``n`` node messages, one tick per ``fleet.nodes`` messages, one second apart from t0."""
    producer = make_producer(settings, linger_ms=20)
    await producer.start()
    name = topic(settings, "gpu.samples")
    try:
        futures = []
        for i in range(n):
            ts = t0 + i // fleet.nodes
            futures.append(await producer.send(name, fleet.encoded(i, ts),
                                               key=fleet.node(i).encode()))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def publish_live(settings: BusSettings, fleet: Fleet, msgs_per_s: float,
                       seconds: float) -> tuple[int, float]:
    """Publish at a steady rate with ts = now; returns (messages sent, messages/s achieved)."""
    producer = make_producer(settings, linger_ms=20)
    await producer.start()
    name = topic(settings, "gpu.samples")
    sent = 0
    start = time.time()
    try:
        while (now := time.time()) - start < seconds:
            due = int((now - start) * msgs_per_s) - sent
            for _ in range(max(0, due)):
                await producer.send(name, fleet.encoded(sent, now),
                                    key=fleet.node(sent).encode())
                sent += 1
            await asyncio.sleep(0.01)
        await producer.flush()
        return sent, sent / (time.time() - start)
    finally:
        await producer.stop()


def raw_count(url: str, prefix: str) -> int:
    client = clickhouse_connect.get_client(dsn=url, autogenerate_session_id=False)
    try:
        q = "SELECT count() FROM gpu_samples WHERE startsWith(node, {p:String})"
        return int(client.query(q, parameters={"p": prefix}).result_rows[0][0])
    finally:
        client.close()


class LivePoller:
    """Every half second, count rows per 250 ms of sample time; rows new since the last poll
    became queryable between the two polls."""

    def __init__(self, url: str, prefix: str) -> None:
        self._url, self._prefix = url, prefix
        self._seen: dict[int, int] = {}
        self._delays: list[tuple[float, int]] = []
        self.rows = 0

    async def run(self, seconds: float) -> None:
        client = clickhouse_connect.get_client(dsn=self._url, autogenerate_session_id=False)
        q = (f"SELECT intDiv(toUnixTimestamp64Milli(ts), {BUCKET_MS}) AS b, count() "
             "FROM gpu_samples WHERE startsWith(node, {p:String}) GROUP BY b")
        end = time.time() + seconds
        try:
            while time.time() < end:
                rows: Any = await asyncio.to_thread(
                    lambda: client.query(q, parameters={"p": self._prefix}).result_rows)
                seen_at = time.time()
                for bucket, count in rows:
                    new = int(count) - self._seen.get(int(bucket), 0)
                    if new > 0:
                        ts = (int(bucket) + 0.5) * BUCKET_MS / 1000
                        self._delays.append((seen_at - ts, new))
                        self._seen[int(bucket)] = int(count)
                        self.rows += new
                await asyncio.sleep(0.5)
        finally:
            client.close()

    def delays(self) -> tuple[float, float]:
        """p50 and p99 of the delay, weighted by rows."""
        ordered = sorted(self._delays)
        total = sum(n for _, n in ordered)
        out = []
        for q in (0.50, 0.99):
            acc = 0
            value = float("nan")
            for d, n in ordered:
                acc += n
                if acc >= q * total:
                    value = d
                    break
            out.append(value)
        return out[0], out[1]
