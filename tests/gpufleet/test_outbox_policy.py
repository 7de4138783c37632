"""The sender's policy without a broker: what a bound may drop, and a wedged producer replaced.

A fake producer stands in for aiokafka's: its deliveries either finish at once or never (as
after a broker restart), and its ``stop()`` never returns while deliveries hang.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from gpufleet.config import BusSettings
from gpufleet.contracts import Alert, AlertState, GpuSample, JobEvent, JobState, Message, NodeSample
from gpufleet.outbox import Outbox, must_keep


class FakeProducer:
    def __init__(self, wedged: bool) -> None:
        self.wedged = wedged
        self.delivered: list[tuple[str, bytes]] = []
        self.stopped = False

    async def start(self) -> None:
        pass

    async def send(self, topic: str, value: bytes,
                   key: bytes | None = None) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if not self.wedged:
            self.delivered.append((topic, value))
            fut.set_result(None)
        return fut

    async def flush(self) -> None:
        pass

    async def stop(self) -> None:
        if self.wedged:
            await asyncio.Event().wait()  # waits on its batches for ever
        self.stopped = True


def job_event(job_id: str, state: JobState) -> JobEvent:
    return JobEvent(job_id=job_id, state=state, node="n1", source="executor")


def sample(seq: int) -> NodeSample:
    return NodeSample(cluster="t", node="n1", seq=seq, gpus=[GpuSample(index=0, uuid="GPU-0")])


async def until(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.01)


@pytest.mark.parametrize(("msg", "kept"), [
    (job_event("a", JobState.STARTED), True),
    (job_event("a", JobState.SUCCEEDED), True),
    (job_event("a", JobState.LOST), True),
    (job_event("a", JobState.HEARTBEAT), False),
    (Alert(alert_id="x1", kind="xid", state=AlertState.FIRING, node="n1"), False),
])
def test_job_events_are_kept_and_the_rest_may_be_dropped(msg: Message, kept: bool) -> None:
    assert must_keep(msg) is kept


def test_past_the_bound_only_droppable_messages_go_and_job_events_stay_in_order() -> None:
    p = Outbox(BusSettings(), lambda: None, buffer_other=4)
    for i in range(30):
        p.send("jobs.events", job_event(f"j{i}", JobState.SUCCEEDED))
        p.send("jobs.events", job_event(f"j{i}", JobState.HEARTBEAT))
    items = p._take()
    ended = [m.job_id for _, m in items if isinstance(m, JobEvent)
             and m.state == JobState.SUCCEEDED]
    beats = [m for _, m in items if isinstance(m, JobEvent) and m.state == JobState.HEARTBEAT]
    assert ended == [f"j{i}" for i in range(30)]
    assert 1 <= len(beats) <= 4 and p.dropped_other == 30 - len(beats)


async def test_a_wedged_producer_is_replaced_and_nothing_kept_is_lost() -> None:
    made: list[FakeProducer] = []

    def factory() -> FakeProducer:
        made.append(FakeProducer(wedged=len(made) == 0))  # the first one wedges
        return made[-1]

    p = Outbox(BusSettings(), factory, delivery_timeout_s=0.3, buffer_samples=2)
    stop = asyncio.Event()
    sender = asyncio.create_task(p.run(stop, flush_timeout_s=2))
    try:
        p.send("jobs.events", job_event("a", JobState.SUCCEEDED))
        for seq in range(5):
            p.offer_sample(sample(seq))
        await until(lambda: p.producer is not None)
        assert p.delivering()
        await until(lambda: len(made) == 2)  # replaced after the deadline
        assert p.reconnects == 1 and p.failures == 1
        await until(lambda: p.buffered == 0)
        assert p.delivering()
        topics = [t for t, _ in made[1].delivered]
        assert topics[0] == "gpufleet.jobs.events" and topics.count("gpufleet.gpu.samples") == 2
    finally:
        stop.set()
        await sender
    assert made[1].stopped and p.producer is None


async def test_readiness_turns_red_while_deliveries_hang() -> None:
    p = Outbox(BusSettings(), lambda: FakeProducer(wedged=True), delivery_timeout_s=0.2)
    stop = asyncio.Event()
    sender = asyncio.create_task(p.run(stop, flush_timeout_s=0.1))
    try:
        await until(lambda: p.producer is not None)
        p.offer_sample(sample(1))
        await until(lambda: not p.delivering())
        assert p.stalled_s() > 0.2 and p.sent == 0
    finally:
        stop.set()
        await sender
