"""The batch-and-offset state machine, without a broker: records, assignments and
acknowledgements in, actions out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec
import pytest
from ingest_builders import T0, make_event, make_placement, make_sample

from gpufleet.contracts import GpuInfo, JobState, NodeInventory, StopJob
from services.ingest.batcher import Batcher, DeadLetter, Pause, Resume, Seek, Write
from services.ingest.core import Ingest, Params
from services.ingest.progress import Mark

NOW = T0 + 3600  # the wall clock of the tests: every sample is in the past
TP = tuple[str, int]
SAMPLES: TP = ("gpu.samples", 0)
EVENTS: TP = ("jobs.events", 0)


@dataclass(frozen=True)
class Rec:
    """A consumer record, already decoded (``msg``) or not decodable (``bad``)."""

    offset: int
    msg: Any = None
    bad: str | None = None


def decode(rec: Rec) -> tuple[Any, str | None]:
    return (None, rec.bad) if rec.bad is not None else (rec.msg, None)


def batcher(max_rows: int = 1000, within_s: float = 60.0, **params: Any) -> Batcher[TP]:
    core = Ingest(Params(grace_s=0, **params), cluster="test")
    return Batcher(core, decode, lambda tp: tp[0], max_rows, within_s)


def sample(i: int, gpus: int = 2, node: str = "n1") -> Any:
    """Sample ``i``: 10 s after sample i-1."""
    b = make_sample(node).at(T0 + 10 * i)
    for g in range(gpus):
        b.gpu(g, 50.0, energy_mj=1000 * i)
    return b.build()


def samples(first: int, last: int, gpus: int = 2) -> list[Rec]:
    return [Rec(i, sample(i, gpus)) for i in range(first, last)]


def gpu_info(i: int) -> GpuInfo:
    return GpuInfo(index=i, uuid=f"u{i}", model="H100", memory_total_bytes=80 << 30)


def writes(actions: list[Any]) -> list[Write[TP]]:
    return [a for a in actions if isinstance(a, Write)]


def rows(w: Write[TP], table: str) -> int:
    return sum(len(next(iter(cols.values()))) for s in w.sealed for t, cols in s.batch.tables
               if t == table)


def started(b: Batcher[TP], tp: TP) -> Batcher[TP]:
    assert b.assigned(tp, None, Mark()) == []
    return b


# -- when a write is due ------------------------------------------------------------------

@pytest.mark.parametrize(("name", "n", "max_rows", "after_s", "expected"), [
    ("below the rows, before the time", 3, 100, 0.5, []),
    ("the rows are reached", 3, 6, 0.5, ["write"]),
    ("the time has passed", 3, 100, 1.0, ["write"]),
    ("nothing held, the time has passed", 0, 100, 1.0, []),
])
def test_a_write_is_due_by_rows_or_by_time(name: str, n: int, max_rows: int, after_s: float,
                                           expected: list[str]) -> None:
    b = started(batcher(max_rows=max_rows, within_s=1.0), SAMPLES)
    b.polled(100.0)  # the clock starts
    assert b.take(SAMPLES, samples(0, n), NOW) == []
    got = b.polled(100.0 + after_s)
    assert ["write" if isinstance(a, Write) else a for a in got] == expected, name
    for w in writes(got):
        assert not w.wait
        assert [(s.start, s.end, s.intent.end) for s in w.sealed] == [(0, n, n)]
        assert rows(w, "gpu_samples") == 2 * n


def test_a_write_in_flight_pauses_fetching_until_it_is_acknowledged() -> None:
    b = started(batcher(max_rows=2), SAMPLES)
    b.take(SAMPLES, samples(0, 1), NOW)
    [first] = writes(b.polled(1.0))
    b.take(SAMPLES, samples(1, 2), NOW)
    assert b.polled(2.0) == [Pause()]
    assert b.polled(3.0) == []  # paused once
    b.written(first, committed=True)
    resumed = b.polled(4.0)
    assert resumed[0] == Resume()
    assert [(s.start, s.end) for s in writes(resumed)[0].sealed] == [(1, 2)]
    assert b.stored[SAMPLES] == 1


def test_offsets_are_stored_only_when_committed() -> None:
    b = started(batcher(max_rows=1), EVENTS)
    b.take(EVENTS, [Rec(0, make_event("j").build())], NOW)
    [w] = writes(b.polled(1.0))
    b.written(w, committed=False)  # the partition moved meanwhile
    assert b.stored[EVENTS] == 0 and b.in_flight == 0
    b.take(EVENTS, [Rec(1, make_event("j").build())], NOW)
    [w] = writes(b.polled(2.0))
    b.written(w, committed=True)
    assert b.stored[EVENTS] == 2


# -- what cannot be used --------------------------------------------------------------------

@pytest.mark.parametrize(("tp", "rec", "reason"), [
    (SAMPLES, Rec(0, bad="does not decode as gpu.samples"), "does not decode"),
    (SAMPLES, Rec(0, make_sample("n1").at(NOW + 86_400).gpu(0).build()), "in the future"),
    (SAMPLES, Rec(0, make_sample("n1").at(T0).gpu(0).gpu(0).build()), "appears twice"),
    (EVENTS, Rec(0, make_event("j").at(NOW + 86_400).build()), "in the future"),
    (EVENTS, Rec(0, msgspec.structs.replace(make_event("j").build(), gpus=[1])),
     "without a node"),
])
def test_unusable_records_become_dead_letters_and_the_batch_goes_on(
        tp: TP, rec: Rec, reason: str) -> None:
    b = started(batcher(max_rows=1), tp)
    good = Rec(1, sample(1) if tp == SAMPLES else make_event("j").build())
    actions = b.take(tp, [rec, good], NOW)
    assert [(type(a), a.record.offset, a.topic) for a in actions] == [(DeadLetter, 0, tp[0])]
    assert reason in actions[0].reason
    [w] = writes(b.polled(1.0))
    [s] = w.sealed
    assert (s.start, s.end, s.batch.rows) == (0, 2, 2 if tp == SAMPLES else 1)


def test_a_message_the_source_fails_on_is_filed_with_the_error() -> None:
    b = started(batcher(), ("nodes", 0))
    broken = NodeInventory(cluster="test", node="n1", gpus=[gpu_info(0)])
    broken.gpus = None  # type: ignore[assignment]  # typed right when decoded, broken since
    [letter] = b.take(("nodes", 0), [Rec(0, broken)], NOW)
    assert isinstance(letter, DeadLetter) and isinstance(letter.error, TypeError)


# -- one source per input kind --------------------------------------------------------------

@pytest.mark.parametrize(("topic", "msgs", "table", "n_rows"), [
    ("jobs.events", [make_event("a").build(), make_event("a").state(JobState.SUCCEEDED)
                     .build()], "job_events", 2),
    ("jobs.placements", [make_placement("a", "n1", 0, 1), StopJob(job_id="a", node="n1",
                                                                  reason="cancelled")],
     "placements", 1),
    ("nodes", [NodeInventory(cluster="test", node="n1", gpus=[gpu_info(i) for i in range(3)])],
     "nodes", 3),
    ("gpu.samples", [sample(0, gpus=4)], "gpu_samples", 4),
])
def test_each_topic_goes_to_its_table(topic: str, msgs: list[Any], table: str,
                                      n_rows: int) -> None:
    tp = (topic, 0)
    b = started(batcher(max_rows=1), tp)
    assert b.take(tp, [Rec(i, m) for i, m in enumerate(msgs)], NOW) == []
    [w] = writes(b.polled(1.0))
    assert [t for s in w.sealed for t, _ in s.batch.tables] == [table]
    assert rows(w, table) == n_rows


def test_closed_windows_are_stored_and_published() -> None:
    b = started(batcher(max_rows=1, idle_after_s=60), SAMPLES)
    b.core.on_event(make_event("j").on("n1", 0).tenant("t1").at(T0).build())
    b.take(SAMPLES, samples(0, 13), NOW)  # two whole minutes and one sample of the third
    [w] = writes(b.polled(1.0))
    tables = {t: cols for s in w.sealed for t, cols in s.batch.tables}
    assert sorted(zip(tables["gpu_util_1m"]["window_start"], tables["gpu_util_1m"]["gpu"],
                      strict=True)) == [(T0, 0), (T0, 1), (T0 + 60, 0), (T0 + 60, 1)]
    out = [(name, key) for s in w.sealed for name, _, key in s.batch.outgoing]
    assert out.count(("gpu.util", b"n1")) == 4
    assert [name for name, _ in out if name == "alerts"] == []  # busy at 50 %


# -- restarts ---------------------------------------------------------------------------------

def test_an_intent_from_before_a_restart_is_repeated_exactly() -> None:
    b = batcher(max_rows=1000)
    assert b.assigned(EVENTS, 10, Mark(end=13)) == [Seek(EVENTS, 10)]
    events = [Rec(i, make_event(f"j{i}").build()) for i in range(10, 16)]
    actions = b.take(EVENTS, events, NOW)
    [w] = writes(actions)
    assert w.wait
    assert [(s.start, s.end, s.intent, s.batch.rows) for s in w.sealed] == [
        (10, 13, Mark(end=13, replay=10, watermark=0.0), 3)]
    b.written(w, committed=True)
    [rest] = writes(b.polled(100.0))
    assert [(s.start, s.end) for s in rest.sealed] == [(13, 16)]


def test_an_intent_ending_at_the_last_record_read_is_written_at_once() -> None:
    b = batcher()
    b.assigned(EVENTS, 0, Mark(end=2))
    [w] = writes(b.take(EVENTS, [Rec(0, make_event("a").build()),
                                 Rec(1, make_event("b").build())], NOW))
    assert [(s.start, s.end) for s in w.sealed] == [(0, 2)]


def test_samples_replay_from_their_mark_to_rebuild_windows_without_rows() -> None:
    first = started(batcher(max_rows=1), SAMPLES)
    first.take(SAMPLES, samples(0, 9), NOW)  # minute 0 whole, minute 1 open from offset 6
    [w] = writes(first.polled(1.0))
    [s] = w.sealed
    assert s.done.replay is not None and s.done.replay < s.end

    again = batcher(max_rows=1)
    assert again.assigned(SAMPLES, s.end, s.done) == [Seek(SAMPLES, s.done.replay)]
    assert again.take(SAMPLES, samples(s.done.replay, 13), NOW) == []
    [w2] = writes(again.polled(1.0))
    [s2] = w2.sealed
    assert (s2.start, s2.end, s2.batch.rows) == (9, 13, 8)  # raw rows of the new records only
    windows = dict(s2.batch.tables)["gpu_util_1m"]
    # minute 1 closed whole (its first samples came from the replay), minute 0 not again
    assert sorted(zip(windows["window_start"], windows["samples"], strict=True)) == [
        (T0 + 60, 6), (T0 + 60, 6)]


def test_revoked_partitions_are_written_and_let_go() -> None:
    b = started(batcher(), SAMPLES)
    started(b, EVENTS)
    b.take(SAMPLES, samples(0, 2), NOW)
    [w] = b.revoked([SAMPLES])
    assert w.wait and [(s.tp, s.start, s.end) for s in w.sealed] == [(SAMPLES, 0, 2)]
    assert SAMPLES not in b.parts and SAMPLES not in b.stored
    assert b.take(SAMPLES, samples(2, 3), NOW) == []  # fetched before the revoke: ignored
    assert EVENTS in b.parts


def test_stopping_writes_what_is_held_and_waits() -> None:
    b = started(batcher(), EVENTS)
    assert b.stopping() == Write((), wait=True)
    b.take(EVENTS, [Rec(0, make_event("a").build())], NOW)
    w = b.stopping()
    assert w.wait and [(s.start, s.end) for s in w.sealed] == [(0, 1)]
