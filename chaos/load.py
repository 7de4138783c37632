"""Steady load: job submissions of mixed shapes through the api, and probe samples that the
suite publishes itself so that it knows exactly which ones the broker acknowledged."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from gpufleet.bus import make_producer, topic
from gpufleet.config import BusSettings
from gpufleet.contracts import GpuSample, NodeSample, encode, key_of

PROBE_PREFIX = "chaos-probe-"


@dataclass
class Submission:
    job_id: str
    at: float  # when it was first sent (Unix seconds)
    body: dict[str, Any]
    acked: bool = False  # the api said it is on the bus (202, or 409 on a retry: it was)
    tries: int = 0
    last_status: str = ""


def job_shape(rng: random.Random, job_s: tuple[float, float], gpus_per_node: int
              ) -> dict[str, Any]:
    """One job of a mix: whole GPUs, a fraction of one, a gang, now and then one that cannot
    fit anywhere (more GPUs than a node has)."""
    run = round(rng.uniform(*job_s), 2)
    roll = rng.random()
    if roll < 0.35:
        shape: dict[str, Any] = {"gpus": 1}
    elif roll < 0.55:
        shape = {"gpus": 1, "gpu_milli": rng.choice((250, 500))}
    elif roll < 0.8:
        shape = {"gpus": rng.choice((2, 4))}
    elif roll < 0.95:
        shape = {"gpus": 2, "gang": 2}
    else:
        shape = {"gpus": gpus_per_node * 2}
    return {**shape, "tenant": rng.choice(("team-a", "team-b")), "sim_duration_s": run,
            "sim_util": 80.0}


@dataclass
class JobLoad:
    api: str
    prefix: str
    per_s: float
    job_s: tuple[float, float]
    gpus_per_node: int
    seed: int = 1
    submissions: list[Submission] = field(default_factory=list)
    _n: int = 0

    async def run(self, stop: asyncio.Event) -> None:
        rng = random.Random(self.seed)
        timeout = aiohttp.ClientTimeout(total=5.0)
        pending: list[Submission] = []
        async with aiohttp.ClientSession(timeout=timeout) as s:
            while not stop.is_set():
                self._n += 1
                sub = Submission(f"{self.prefix}-{self._n:05d}", time.time(),
                                 job_shape(rng, self.job_s, self.gpus_per_node))
                self.submissions.append(sub)
                pending.append(sub)
                for one in list(pending):
                    await self._try(s, one)
                    if one.acked or one.tries >= 5:
                        pending.remove(one)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 1.0 / self.per_s)

    async def _try(self, s: aiohttp.ClientSession, sub: Submission) -> None:
        sub.tries += 1
        try:
            async with s.post(f"{self.api}/api/v1/jobs",
                              json={"job_id": sub.job_id, **sub.body}) as r:
                sub.last_status = str(r.status)
                # A 409 on a retry: an earlier try did reach the bus after all.
                sub.acked = r.status in (200, 201, 202) or (r.status == 409 and sub.tries > 1)
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            sub.last_status = type(e).__name__

    def acked_between(self, t0: float, t1: float) -> tuple[int, int]:
        """(acknowledged, offered) submissions first sent in [t0, t1)."""
        subs = [s for s in self.submissions if t0 <= s.at < t1]
        return sum(s.acked for s in subs), len(subs)


@dataclass
class ProbeLoad:
    """Samples of probe nodes (one GPU each) with known acknowledgements: (node, ms) -> sent."""

    bus: BusSettings
    nodes: int
    per_s: float
    acked: dict[tuple[str, int], float] = field(default_factory=dict)
    failed: int = 0
    offered: list[float] = field(default_factory=list)
    _last_ms: dict[str, int] = field(default_factory=dict)

    async def run(self, stop: asyncio.Event) -> None:
        producer: AIOKafkaProducer | None = None
        seq = 0
        try:
            while not stop.is_set():
                if producer is None:
                    producer = make_producer(self.bus, client_id="chaos-probe",
                                             request_timeout_ms=5000, linger_ms=0)
                    try:
                        await asyncio.wait_for(producer.start(), 10.0)
                    except (KafkaError, TimeoutError, OSError):
                        await _stop_quietly(producer)
                        producer = None
                        await asyncio.sleep(1.0)
                        continue
                node = f"{PROBE_PREFIX}{seq % self.nodes}"
                ms = max(int(time.time() * 1000), self._last_ms.get(node, 0) + 1)
                self._last_ms[node] = ms
                msg = NodeSample(cluster="chaos", node=node, seq=seq, ts=ms / 1000.0,
                                 gpus=[GpuSample(index=0, uuid=f"{node}-gpu0", util_gpu=50.0)])
                seq += 1
                self.offered.append(ms / 1000.0)
                try:
                    await asyncio.wait_for(producer.send_and_wait(
                        topic(self.bus, "gpu.samples"), encode(msg), key=key_of(msg)), 15.0)
                    self.acked[(node, ms)] = time.time()
                except (KafkaError, TimeoutError, OSError):
                    self.failed += 1
                    await _stop_quietly(producer)  # a fresh producer: never wait on a wedge
                    producer = None
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 1.0 / self.per_s)
        finally:
            if producer is not None:
                await _stop_quietly(producer)

    def acked_between(self, t0: float, t1: float) -> tuple[int, int]:
        acked = sum(1 for (_, ms) in self.acked if t0 <= ms / 1000.0 < t1)
        return acked, sum(1 for t in self.offered if t0 <= t < t1)


async def _stop_quietly(producer: AIOKafkaProducer) -> None:
    with contextlib.suppress(Exception):
        await asyncio.wait_for(producer.stop(), 10.0)
