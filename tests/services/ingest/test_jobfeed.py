"""The job feed: a record it cannot use, or that its core fails on, is skipped; the feed goes on."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import pytest
from aiokafka import TopicPartition

from gpufleet.config import BusSettings
from gpufleet.contracts import JobEvent, JobSpec, JobState, Placement, encode
from services.ingest.core import Ingest, Params
from services.ingest.jobfeed import JobFeed


@dataclass
class Rec:
    topic: str
    value: bytes | None
    partition: int = 0
    offset: int = 0
    key: bytes | None = None


class Batches:
    def __init__(self, records: list[Rec]) -> None:
        self.records = records

    async def getmany(self, **_: Any) -> dict[TopicPartition, list[Rec]]:
        return {TopicPartition("t", 0): self.records}


def _placement(job_id: str) -> Rec:
    p = Placement(job=JobSpec(job_id=job_id), node="n1", gpus=[0], ts=time.time())
    return Rec("gpufleet.jobs.placements", encode(p))


@pytest.mark.parametrize(("name", "bad"), [
    ("a record that does not decode", Rec("gpufleet.jobs.events", b"{not json")),
    ("a record the core fails on", Rec("gpufleet.jobs.events", encode(JobEvent(
        job_id="boom", state=JobState.STARTED, node="n1", gpus=[0], ts=time.time())))),
])
async def test_a_record_it_cannot_use_is_skipped_and_the_feed_goes_on(
        name: str, bad: Rec, monkeypatch: pytest.MonkeyPatch) -> None:
    core = Ingest(Params())
    seen: list[str] = []

    def on_event(ev: JobEvent) -> None:
        raise RuntimeError(f"cannot handle {ev.job_id}")

    monkeypatch.setattr(core, "on_event", on_event)
    monkeypatch.setattr(core, "on_placement", lambda p: seen.append(p.job.job_id))
    feed = JobFeed(BusSettings(), core, admin=None)  # type: ignore[arg-type]
    await feed.stop()  # its own consumer was never started: the test reads from a list
    feed._consumer = Batches([bad, _placement("after")])
    await feed.poll(0)
    assert seen == ["after"], name
