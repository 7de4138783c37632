"""The outbox: one sender per process (telemetry, the executor and the fleet simulator use it)
that never grows without bound while Kafka is away and never waits on Kafka without a deadline.

Node samples wait in a bounded buffer: past its bound the oldest sample is dropped and counted,
and the node's next delivered sample carries the count in ``dropped``. Other messages wait in a
queue of their own, sent first. Job events other than heartbeats are acknowledged work: they are
kept until delivered, whatever the bound (readers drop repeats by ``event_id``). Inventories,
alerts and heartbeats are bounded; past the bound the oldest of them is dropped and counted.

Every wait on the producer has a deadline (``delivery_timeout_s``). A batch that fails or times
out goes back to the front of its queues; the producer is then closed (within a deadline) and a
new one is started, retrying with backoff until Kafka answers: a producer wedged by a broker
restart is replaced, not waited on. A clean stop flushes what it can within the flush timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import msgspec
from aiokafka.errors import (
    CorruptRecordException,
    InvalidTopicError,
    KafkaError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
)

from gpufleet.bus import Factory, connect, topic
from gpufleet.config import BusSettings
from gpufleet.contracts import JobEvent, JobState, Message, NodeSample, encode, key_of
from gpufleet.ops import Metrics

log = logging.getLogger(__name__)

Item = tuple[str, Message]  # (topic short name, message)
# What the broker refuses for one message whatever the retries: that message is dropped (and
# counted) rather than retried for ever. Any other failure is retried.
REFUSED = (MessageSizeTooLargeError, RecordListTooLargeError, RecordTooLargeError,
           CorruptRecordException, InvalidTopicError)


def must_keep(msg: Message) -> bool:
    """Whether a message is acknowledged work that no bound may drop."""
    return isinstance(msg, JobEvent) and msg.state != JobState.HEARTBEAT


class Outbox:
    """Messages waiting to be sent: node samples in a bounded buffer, the rest in a queue sent
    first (job events other than heartbeats are never dropped). ``run`` sends them."""

    def __init__(self, settings: BusSettings, factory: Factory, buffer_samples: int = 600,
                 buffer_other: int = 10_000, batch: int = 1024,
                 metrics: Metrics | None = None, delivery_timeout_s: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._settings = settings
        self._factory = factory
        self.producer: Any | None = None
        self._samples: deque[NodeSample] = deque()
        self._other: deque[Item] = deque()
        self._droppable = 0  # items of _other that a bound may drop
        self._bound = buffer_samples
        self._bound_other = buffer_other
        self._batch = batch
        self._timeout = delivery_timeout_s
        self._clock = clock
        self._pending_drops: dict[str, int] = {}
        self._wake = asyncio.Event()
        self._topics = {n: topic(settings, n) for n in ("gpu.samples",)}
        self.metrics = metrics or Metrics()
        self.dropped = 0  # node samples dropped, in all
        self.dropped_other = 0
        self.unsendable = 0  # messages the broker refused for good (too large, ...)
        self.sent = 0
        self.failures = 0
        self.reconnects = 0
        self.in_flight = 0
        self.progress_at = clock()  # when a batch last got through, or nothing was waiting

    @property
    def buffered(self) -> int:
        return len(self._samples) + len(self._other)

    def stalled_s(self) -> float:
        """Seconds that messages have waited without any getting through (0 when none wait)."""
        if not self.buffered and not self.in_flight:
            return 0.0
        return self._clock() - self.progress_at

    def delivering(self) -> bool:
        """Ready: connected, and nothing has waited past the delivery deadline."""
        return self.producer is not None and self.stalled_s() <= self._timeout

    def offer_sample(self, sample: NodeSample) -> None:
        self._samples.append(sample)
        self._trim_samples()
        self._wake.set()

    def send(self, name: str, msg: Message) -> None:
        """Queue a message other than a sample; it is sent before the samples."""
        self._other.append((name, msg))
        self._droppable += not must_keep(msg)
        self._trim_other()
        self._wake.set()

    def _trim_samples(self) -> None:
        while len(self._samples) > self._bound:
            old = self._samples.popleft()
            self._pending_drops[old.node] = self._pending_drops.get(old.node, 0) + 1 + old.dropped
            self.dropped += 1
            self.metrics.inc("telemetry_samples_dropped_total", help="node samples dropped")

    def _trim_other(self) -> None:
        """Past the bound, drop the oldest droppable messages (a tenth more, to trim seldom)."""
        if self._droppable <= self._bound_other:
            return
        excess = self._droppable - self._bound_other + self._bound_other // 10
        dropped = excess
        kept: deque[Item] = deque()
        for item in self._other:
            if excess and not must_keep(item[1]):
                excess -= 1
                continue
            kept.append(item)
        self._other = kept
        self._droppable -= dropped
        self.dropped_other += dropped
        log.warning("outbox full: dropped the %d oldest inventories, alerts and heartbeats "
                    "(job events are kept)", dropped)

    def _take(self) -> list[Item]:
        out: list[Item] = []
        while self._other and len(out) < self._batch:
            item = self._other.popleft()
            self._droppable -= not must_keep(item[1])
            out.append(item)
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
        self._droppable += sum(not must_keep(m) for _, m in others)
        self._trim_samples()
        self._trim_other()

    async def _send_batch(self, items: list[Item]) -> list[Item]:
        """Send and wait for delivery, within the deadline; return the items to send again."""
        producer, settings = self.producer, self._settings
        assert producer is not None
        futures: list[asyncio.Future[Any] | None] = []  # None: refused for good at send
        self.in_flight = len(items)
        try:
            async with asyncio.timeout(self._timeout):
                for name, msg in items:
                    t = self._topics.get(name) or topic(settings, name)
                    try:
                        futures.append(await producer.send(t, encode(msg), key=key_of(msg)))
                    except REFUSED as e:
                        self._refused(name, e)
                        futures.append(None)
                pending = [f for f in futures if f is not None]
                if pending:
                    await asyncio.wait(pending)
        except TimeoutError:
            log.warning("delivery of %d messages timed out after %.0fs", len(items),
                        self._timeout)
        except asyncio.CancelledError:  # a stop's flush ran out of time: count them unsent
            self.in_flight = 0
            self._put_back(items)
            raise
        except KafkaError as e:  # the broker or the connection: tried again (anything else
            log.warning("send failed: %s", e)  # is a bug, and ends the sender and its process)
        self.in_flight = 0
        failed: list[Item] = []
        for item, fut in zip(items, futures, strict=False):
            if fut is None:
                continue  # refused at send, counted there
            error = _error_of(fut)
            if error is None:
                self.sent += 1
            elif isinstance(error, REFUSED):
                self._refused(item[0], error)
            else:
                failed.append(item)
        failed.extend(items[len(futures):])
        if not failed:
            self.progress_at = self._clock()
        return failed

    def _refused(self, name: str, error: KafkaError) -> None:
        self.unsendable += 1
        log.error("dropped a %s message that the broker refuses: %s", name, error)

    async def run(self, stop: asyncio.Event, flush_timeout_s: float = 5.0) -> None:
        """Send until ``stop`` is set, then flush for at most ``flush_timeout_s``."""
        backoff = 0.2
        while not stop.is_set():
            if self.producer is None:
                self.producer = await connect(self._factory, stop, timeout_s=self._timeout)
                if self.producer is None:
                    break
            if not self.buffered:
                self.progress_at = self._clock()
                self._wake.clear()
                await _first(self._wake.wait(), stop.wait())
                continue
            failed = await self._send_batch(self._take())
            if failed:
                self.failures += 1
                self._put_back(failed)
                await self._replace_producer()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), backoff)
                backoff = min(backoff * 2, 5.0)
            else:
                backoff = 0.2
        await self.flush(flush_timeout_s)
        await self.close(max(1.0, flush_timeout_s))

    async def _replace_producer(self) -> None:
        """End the producer that failed, its unsent batches with it (they are queued here
        again); ``run`` starts a new one."""
        self.reconnects += 1
        self.metrics.inc("telemetry_producer_restarts_total",
                         help="producers replaced after a failed or timed-out delivery")
        await self.close(abort=True)

    async def close(self, timeout_s: float | None = None, abort: bool = False) -> None:
        """Stop the producer, flushing its batches; past the deadline (default: the delivery
        deadline), or at once with ``abort``, end it without them."""
        producer, self.producer = self.producer, None
        if producer is None:
            return
        deadline = self._timeout if timeout_s is None else timeout_s
        if abort:
            await _abort(producer)
            return
        stopping = asyncio.ensure_future(producer.stop())
        await asyncio.wait([stopping], timeout=deadline)
        if not stopping.done():
            log.warning("the producer did not stop within %.0fs (its batches wait for a broker"
                        " that does not answer); ended without them", deadline)
            await _abort(producer)
            await asyncio.wait([stopping], timeout=deadline)
        if not stopping.done():
            stopping.cancel()
        elif not stopping.cancelled() and stopping.exception() is not None:
            log.warning("stopping the producer failed: %s", stopping.exception())

    async def flush(self, timeout_s: float) -> bool:
        """Send what is buffered; False if some of it could not be sent in time."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                while self.buffered and self.producer is not None:
                    failed = await self._send_batch(self._take())
                    if failed:
                        self._put_back(failed)
                        await asyncio.sleep(0.2)
                if self.producer is not None:
                    await self.producer.flush()
                if not self.buffered:
                    return True
        log.warning("stopped with %d messages unsent", self.buffered)
        return False


def _error_of(fut: asyncio.Future[Any]) -> BaseException | None:
    """The failure of a delivery future; a future still pending counts as failed."""
    if not fut.done():
        fut.add_done_callback(_ignore_outcome)  # its outcome, when it comes, is not needed
        return TimeoutError("not delivered in time")
    if fut.cancelled():
        return asyncio.CancelledError()
    return fut.exception()


async def _abort(producer: Any) -> None:
    """End a producer at once, the batches it has not delivered with it.

    aiokafka's ``stop()`` first waits for every pending batch, with no deadline (an idempotent
    producer retries a batch for ever), and only then stops its sender task and closes its
    connections. aiokafka has no public call for the second half alone, so this is it, in the
    one place that reaches inside. Left to run, the old producer would deliver its batches
    after their copies went out through the new one.
    """
    with contextlib.suppress(Exception):
        sender = getattr(producer, "_sender", None)
        if sender is not None:
            await sender.close()
        await producer.client.close()
        producer._closed = True  # as stop() leaves it: no "unclosed producer" warning


def _ignore_outcome(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled():
        fut.exception()


async def _first(*aws: Any) -> None:
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()
