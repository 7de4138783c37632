"""One sender per process, that never grows without bound while Kafka is away.

Node samples wait in a bounded buffer: past its bound the oldest sample is dropped and counted,
and the node's next delivered sample carries the count in ``dropped``. Other messages (inventory,
alerts, job events) wait in a queue of their own, sent first, also bounded. A failed send puts
its messages back at the front and the sender backs off; a clean stop flushes what it can within
the flush timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from typing import Any

import msgspec

from gpufleet.bus import topic
from gpufleet.config import BusSettings
from gpufleet.contracts import Message, NodeSample, encode, key_of
from gpufleet.ops import Metrics

log = logging.getLogger(__name__)

Item = tuple[str, Message]  # (topic short name, message)


class Publisher:
    def __init__(self, settings: BusSettings, producer: Any, buffer_samples: int = 600,
                 buffer_other: int = 10_000, batch: int = 1024,
                 metrics: Metrics | None = None) -> None:
        self._settings = settings
        self.producer = producer
        self._samples: deque[NodeSample] = deque()
        self._other: deque[Item] = deque()
        self._bound = buffer_samples
        self._bound_other = buffer_other
        self._batch = batch
        self._pending_drops: dict[str, int] = {}
        self._wake = asyncio.Event()
        self._topics = {n: topic(settings, n) for n in ("gpu.samples",)}
        self.metrics = metrics or Metrics()
        self.dropped = 0  # node samples dropped, in all
        self.dropped_other = 0
        self.sent = 0
        self.failures = 0
        self.in_flight = 0

    @property
    def buffered(self) -> int:
        return len(self._samples) + len(self._other)

    def offer_sample(self, sample: NodeSample) -> None:
        self._samples.append(sample)
        self._trim_samples()
        self._wake.set()

    def send(self, name: str, msg: Message) -> None:
        """Queue a message other than a sample; it is sent before the samples."""
        self._other.append((name, msg))
        self._trim_other()
        self._wake.set()

    def _trim_samples(self) -> None:
        while len(self._samples) > self._bound:
            old = self._samples.popleft()
            self._pending_drops[old.node] = self._pending_drops.get(old.node, 0) + 1 + old.dropped
            self.dropped += 1
            self.metrics.inc("telemetry_samples_dropped_total", help="node samples dropped")

    def _trim_other(self) -> None:
        while len(self._other) > self._bound_other:
            name, _ = self._other.popleft()
            self.dropped_other += 1
            log.warning("outbox full: dropped the oldest %s message", name)

    def _take(self) -> list[Item]:
        out: list[Item] = []
        while self._other and len(out) < self._batch:
            out.append(self._other.popleft())
        pending = self._pending_drops
        while self._samples and len(out) < self._batch:
            s = self._samples.popleft()
            if pending and s.node in pending:
                s = msgspec.structs.replace(s, dropped=s.dropped + pending.pop(s.node))
            out.append(("gpu.samples", s))
        return out

    def _put_back(self, items: list[Item]) -> None:
        samples = [m for n, m in items if isinstance(m, NodeSample) and n == "gpu.samples"]
        others = [(n, m) for n, m in items if not (isinstance(m, NodeSample)
                                                   and n == "gpu.samples")]
        self._samples.extendleft(reversed(samples))
        self._other.extendleft(reversed(others))
        self._trim_samples()
        self._trim_other()

    async def _send_batch(self, items: list[Item]) -> list[Item]:
        """Send; return the items that did not get through."""
        producer, settings = self.producer, self._settings
        futures: list[asyncio.Future[Any]] = []
        self.in_flight = len(items)
        try:
            for name, msg in items:
                t = self._topics.get(name) or topic(settings, name)
                futures.append(await producer.send(t, encode(msg), key=key_of(msg)))
        except Exception as e:
            log.warning("send failed: %s", e)
        results = await asyncio.gather(*futures, return_exceptions=True)
        self.in_flight = 0
        failed = [items[i] for i, r in enumerate(results) if isinstance(r, BaseException)]
        failed.extend(items[len(futures):])
        self.sent += len(items) - len(failed)
        return failed

    async def run(self, stop: asyncio.Event, flush_timeout_s: float = 5.0) -> None:
        """Send until ``stop`` is set, then flush for at most ``flush_timeout_s``."""
        backoff = 0.2
        while not stop.is_set():
            if not self.buffered:
                self._wake.clear()
                await _first(self._wake.wait(), stop.wait())
                continue
            failed = await self._send_batch(self._take())
            if failed:
                self.failures += 1
                self._put_back(failed)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), backoff)
                backoff = min(backoff * 2, 5.0)
            else:
                backoff = 0.2
        await self.flush(flush_timeout_s)

    async def flush(self, timeout_s: float) -> bool:
        """Send what is buffered; False if some of it could not be sent in time."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                while self.buffered:
                    failed = await self._send_batch(self._take())
                    if failed:
                        self._put_back(failed)
                        await asyncio.sleep(0.2)
                await self.producer.flush()
                return True
        log.warning("stopped with %d messages unsent", self.buffered)
        return False


async def _first(*aws: Any) -> None:
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()
