"""Reading the topics back for recovery: all of them up to their end offsets, or an error."""

from __future__ import annotations

import pytest
from aiokafka import TopicPartition
from sched_builders import make_node

from gpufleet.bus import make_producer, missing_topics, publish, topic
from gpufleet.config import BusSettings
from gpufleet.contracts import JobSpec, SubmitJob
from services.scheduler.config import SchedulerSettings
from services.scheduler.reading import (
    RecoveryIncomplete,
    read_range,
    unread,
)

A, B = TopicPartition("t", 0), TopicPartition("t", 1)


@pytest.mark.parametrize(("name", "ends", "positions", "left"), [
    ("nothing to read", {A: 0}, {}, {}),
    ("not started", {A: 3, B: 1}, {}, {A: 3, B: 1}),
    ("one at its end, one behind", {A: 3, B: 5}, {A: 3, B: 4}, {B: 5}),
    ("a position past the end (markers) is done", {A: 3}, {A: 4}, {}),
    ("empty polls alone are not the end", {A: 3}, {A: 0}, {A: 3}),
])
def test_unread(name: str, ends: dict[TopicPartition, int],
                positions: dict[TopicPartition, int], left: dict[TopicPartition, int]) -> None:
    assert unread(ends, positions) == left, name


@pytest.mark.parametrize(("name", "present", "absent"), [
    ("all there", ["jobs.requests", "nodes"], []),
    ("none there", [], ["jobs.requests", "nodes"]),
    ("one missing", ["nodes"], ["jobs.requests"]),
])
def test_missing_topics(name: str, present: list[str], absent: list[str]) -> None:
    s = SchedulerSettings(topic_prefix="p")
    found = [TopicPartition(topic(s, n), 0) for n in present]
    assert missing_topics(s, ["jobs.requests", "nodes"], found) == absent, name


def settings_of(bus: BusSettings, timeout_s: float) -> SchedulerSettings:
    return SchedulerSettings(kafka_bootstrap=bus.kafka_bootstrap, topic_prefix=bus.topic_prefix,
                             cluster=bus.cluster, scheduler_recovery_timeout_s=timeout_s)


@pytest.mark.integration
async def test_read_range_reads_up_to_the_end_offsets(bus: BusSettings) -> None:
    producer = make_producer(bus)
    await producer.start()
    for n in range(3):
        await publish(producer, bus, "nodes", make_node(f"n{n}").inventory())
    await publish(producer, bus, "jobs.requests", SubmitJob(job=JobSpec(job_id="j")))
    await producer.stop()
    nodes = TopicPartition(topic(bus, "nodes"), 0)
    requests = TopicPartition(topic(bus, "jobs.requests"), 0)
    records = await read_range(settings_of(bus, 30), {nodes: 2, requests: 1})
    assert sorted((r.topic, r.offset) for r in records) == sorted([
        (nodes.topic, 0), (nodes.topic, 1), (requests.topic, 0)])


@pytest.mark.integration
async def test_read_range_fails_rather_than_return_part_of_the_state(bus: BusSettings) -> None:
    producer = make_producer(bus)
    await producer.start()
    await publish(producer, bus, "nodes", make_node("n0").inventory())
    await producer.stop()
    short = TopicPartition(topic(bus, "nodes"), 0)  # one record; we claim its end is 5
    with pytest.raises(RecoveryIncomplete, match=rf"{short.topic}\[0\] < 5"):
        await read_range(settings_of(bus, 4.0), {short: 5})


