"""The live state and its views, without the bus: messages in, answers out."""

from __future__ import annotations

import pytest

from gpufleet.contracts import Alert, AlertState, JobEvent, JobState, SubmitJob
from services.api import core
from services.api.history import fold
from services.api.state import LiveState
from services.scheduler.config import SchedulerSettings
from services.scheduler.core import SchedulerCore
from services.scheduler.profile import build_profile

from .builders import make_job, make_node, snapshot


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def live() -> LiveState:
    return LiveState(clock=Clock())


@pytest.mark.parametrize(("utils", "busy", "gap", "idle_seconds"), [
    ((1, 1, 1, 1), (0, 1), 10, 20),  # two allocated GPUs under 5 % for 10 s
    ((50, 1, 1, 1), (0, 1), 10, 10),  # one of them busy
    ((1, 1, 1, 1), (), 10, 0),  # idle but not allocated: not waste
    ((1, 1, 1, 1), (0,), 600, 0),  # a long silence is not counted
])
def test_idle_allocated_seconds(utils: tuple[float, ...], busy: tuple[int, ...], gap: float,
                                idle_seconds: float) -> None:
    state = live()
    node = make_node("n").gpus(4).busy(*busy).util(*utils)
    state.apply(snapshot([node], []))
    state.apply(node.sample(ts=100.0))
    state.apply(node.sample(ts=100.0 + gap))
    assert state.idle_gpu_seconds == idle_seconds


def test_job_utilization_follows_its_gpus_until_it_ends() -> None:
    state = live()
    job = make_job("j").gpus(2).on("n", 1, 2)
    node = make_node("n").gpus(4).util(0, 40, 60, 0)
    state.apply(job.placement())
    for t in (100.0, 102.0, 106.0):  # a point at most every 5 s
        state.apply(node.sample(ts=t))
    assert list(state.jobs["j"].util) == [(100.0, 50.0), (106.0, 50.0)]
    state.apply(job.event(JobState.SUCCEEDED))
    state.apply(node.sample(ts=120.0))
    assert len(state.jobs["j"].util) == 2
    assert state.running_on["n"] == {}


def test_a_snapshot_does_not_revive_an_ended_job() -> None:
    state = live()
    job = make_job("j").on("n", 0)
    state.apply(job.event(JobState.FAILED))
    state.apply(snapshot([make_node("n")], [job]))
    assert state.jobs["j"].state is JobState.FAILED


@pytest.mark.parametrize(("event", "snapshot_state", "expected"), [
    (JobState.STARTED, JobState.PLACED, JobState.STARTED),  # placed is not news once started
    (JobState.HEARTBEAT, JobState.PLACED, JobState.STARTED),
    (JobState.STARTED, JobState.PREEMPTING, JobState.PREEMPTING),
    (JobState.STARTED, JobState.QUEUED, JobState.QUEUED),  # preempted and queued again
    (JobState.QUEUED, JobState.PLACED, JobState.PLACED),
])
def test_snapshot_states(event: JobState, snapshot_state: JobState, expected: JobState) -> None:
    state = live()
    job = make_job("j").on("n", 0)
    state.apply(job.event(event))
    job.job_state = snapshot_state
    state.apply(snapshot([make_node("n")], [job]))
    assert state.jobs["j"].state is expected


def duplicate_rejection(submit: SubmitJob) -> JobEvent:
    """The scheduler's own answer to a second submit with the id of ``submit``."""
    scheduler = SchedulerCore(build_profile(SchedulerSettings()), clock=lambda: 100.0)
    scheduler.handle(submit)
    [answer] = scheduler.handle(submit)
    assert isinstance(answer, JobEvent) and answer.state is JobState.REJECTED, answer
    return answer


@pytest.mark.parametrize("ended", [JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED])
def test_a_refused_resubmit_leaves_the_job_that_holds_the_id_alone(ended: JobState) -> None:
    state = live()
    job = make_job("j").tenant("team-a").gpus(2).on("n", 0, 1)
    state.apply(SubmitJob(job=job.spec()))
    for st in (JobState.QUEUED, JobState.PLACED, ended):
        state.apply(job.event(st))
    again = SubmitJob(job=make_job("j").tenant("team-b").gpus(8).spec())
    state.apply(again)
    state.apply(duplicate_rejection(again))
    record = state.jobs["j"]
    assert (record.state, record.tenant, record.gpus) == (ended, "team-a", 2)
    assert [e.state for e in record.events] == [JobState.QUEUED, JobState.PLACED, ended]


@pytest.mark.parametrize(("reason", "known", "expected"), [
    ("duplicate job id 'j': taken", True, JobState.QUEUED),  # about a refused second submit
    ("duplicate job id 'j': taken", False, JobState.REJECTED),  # the only word of this id
    ("needs 9 GPUs, no node has them", True, JobState.REJECTED),  # the job itself refused
])
def test_rejections(reason: str, known: bool, expected: JobState) -> None:
    state = live()
    job = make_job("j")
    if known:
        state.apply(job.event(JobState.QUEUED))
    rejected = job.event(JobState.REJECTED)
    rejected.reason = reason
    state.apply(rejected)
    assert state.jobs["j"].state is expected


def test_oldest_jobs_are_forgotten_first() -> None:
    state = LiveState(clock=Clock(), max_jobs=10)
    for i in range(12):
        state.apply(make_job(f"j{i}").event(JobState.QUEUED))
    assert list(state.jobs) == [f"j{i}" for i in range(2, 12)]


@pytest.mark.parametrize(("filters", "expected"), [
    ({}, ["c", "b", "a"]),
    ({"tenant": "t1"}, ["c", "a"]),
    ({"states": {"queued"}}, ["b", "a"]),
    ({"since": 2.0}, ["c", "b"]),
    ({"until": 2.0}, ["a"]),
    ({"offset": 1, "limit": 1}, ["b"]),
])
def test_list_jobs(filters: dict[str, object], expected: list[str]) -> None:
    state = live()
    for ts, (job_id, tenant, st) in enumerate(
            [("a", "t1", JobState.QUEUED), ("b", "t2", JobState.QUEUED),
             ("c", "t1", JobState.STARTED)], 1):
        ev = make_job(job_id).tenant(tenant).event(st)
        ev.ts = float(ts)
        state.apply(ev)
    page = core.list_jobs(state, **filters)  # type: ignore[arg-type]
    assert [j.job_id for j in page.jobs] == expected
    assert page.total == len(expected) + filters.get("offset", 0) + (  # type: ignore[operator]
        1 if filters.get("limit") else 0)


@pytest.mark.parametrize(("quotas", "fair"), [
    ({}, {"t1": 4.0, "t2": 4.0}),
    ({"t1": 3, "t2": 1}, {"t1": 6.0, "t2": 2.0}),
])
def test_tenant_fair_share(quotas: dict[str, float], fair: dict[str, float]) -> None:
    state = live()
    state.apply(make_node("n").gpus(8).inventory())
    state.apply(make_job("a").tenant("t1").gpus(2).on("n", 0, 1).event())
    state.apply(make_job("b").tenant("t2").event(JobState.QUEUED))
    usage = {t.tenant: t for t in core.tenants(state, quotas).tenants}
    assert {t: u.fair_share for t, u in usage.items()} == fair
    assert (usage["t1"].gpus_used, usage["t1"].running_jobs, usage["t2"].queued_jobs) == (2, 1, 1)


def test_alerts_open_and_resolve() -> None:
    state = live()
    firing = Alert(alert_id="idle:n:0", kind="idle_gpu", state=AlertState.FIRING, node="n", gpu=0)
    state.apply(firing)
    assert [a.alert_id for a in core.alerts(state).alerts] == ["idle:n:0"]
    state.apply(Alert(alert_id="idle:n:0", kind="idle_gpu", state=AlertState.RESOLVED))
    assert core.alerts(state).alerts == []


def test_history_fold_by_model_weights_by_gpu_seconds() -> None:
    rows = [(0, "n1/0", 50 * 60, 60, 70, 0, 0, 1), (0, "n1/1", 10 * 60, 60, 20, 60, 0, 1),
            (0, "n2/0", 90 * 60, 60, 95, 0, 0, 1)]
    points = fold(rows, "model", {"n1/0": "H100", "n1/1": "H100", "n2/0": "A100"})
    assert [(p.key, p.util_mean, p.util_max, p.gpus) for p in points] == [
        ("A100", 90.0, 95.0, 1), ("H100", 30.0, 70.0, 2)]


@pytest.mark.parametrize(("vouch", "beats", "kept"), [
    (None, (), False),  # a lone `started` of a job nobody submitted: dropped after the lease
    (None, (50.0, 100.0, 150.0), True),  # its heartbeats keep it
    ("submit", (), True),  # a submitted job is the scheduler's to end (its node lease)
    ("placement", (), True),
    ("snapshot", (), True),
])
def test_a_job_known_only_by_its_events_expires_without_them(
        vouch: str | None, beats: tuple[float, ...], kept: bool) -> None:
    clock = Clock()
    state = LiveState(clock=clock, job_lease_s=60.0)
    job = make_job("ghost").on("n", 3)
    start = job.event(JobState.STARTED)
    start.ts = clock.now
    state.apply(start)
    if vouch == "submit":
        state.apply(SubmitJob(job=job.spec()))
    elif vouch == "placement":
        state.apply(job.placement())
    elif vouch == "snapshot":
        state.apply(snapshot([make_node("n").gpus(4)], [job]))
    assert state.jobs["ghost"].state is JobState.STARTED and state.running_on["n"]["ghost"]
    start_ts = clock.now
    for dt in (*beats, 200.0):
        clock.now = start_ts + dt
        if dt in beats:
            beat = job.event(JobState.HEARTBEAT)
            beat.ts = clock.now
            state.apply(beat)
        state.expire_orphans()
    assert ("ghost" in state.jobs) is kept
    assert ("ghost" in state.running_on.get("n", {})) is kept
    assert state.allocated("n") == ({3} if kept else set())


WAIT = "waiting for the next scheduling cycle"
S = JobState


@pytest.mark.parametrize(("name", "events", "reason"), [
    ("queued: why it waits", [(S.QUEUED, WAIT)], WAIT),
    ("a new reason to wait replaces the old", [(S.QUEUED, WAIT), (S.QUEUED, "no node fits")],
     "no node fits"),
    ("placed: the reason to wait is gone", [(S.QUEUED, WAIT), (S.PLACED, None)], None),
    ("started", [(S.QUEUED, WAIT), (S.PLACED, None), (S.STARTED, None)], None),
    ("a heartbeat of a placed job", [(S.QUEUED, WAIT), (S.PLACED, None), (S.HEARTBEAT, None)],
     None),
    ("failed: why it ended", [(S.QUEUED, WAIT), (S.PLACED, None), (S.FAILED, "exit code 3")],
     "exit code 3"),
    ("preempted and queued again", [(S.QUEUED, WAIT), (S.PLACED, None), (S.PREEMPTING, "by vip"),
                                    (S.QUEUED, "preempted; back in its queue")],
     "preempted; back in its queue"),
])
def test_the_reason_is_shown_only_while_its_state_holds(
        name: str, events: list[tuple[JobState, str | None]], reason: str | None) -> None:
    state = live()
    job = make_job("j").on("n", 0)
    for st, why in events:
        ev = job.event(st)
        ev.reason = why
        state.apply(ev)
    assert (state.jobs["j"].state, state.jobs["j"].reason) == (
        S.STARTED if events[-1][0] is S.HEARTBEAT else events[-1][0], reason), name
    assert core.job_view(state.jobs["j"]).reason == reason, name


@pytest.mark.parametrize(("name", "snapshot_state", "reason", "expected"), [
    ("the scheduler places the job: no reason to wait", S.PLACED, None, None),
    ("still queued, for a new reason", S.QUEUED, "over quota", "over quota"),
    ("still queued, nothing new said", S.QUEUED, None, WAIT),
])
def test_a_snapshot_keeps_the_reason_only_while_it_applies(
        name: str, snapshot_state: JobState, reason: str | None, expected: str | None) -> None:
    state = live()
    job = make_job("j")
    queued = job.event(S.QUEUED)
    queued.reason = WAIT
    state.apply(queued)
    if snapshot_state is S.PLACED:
        job.on("n", 0)
    job.job_state = snapshot_state
    snap = snapshot([make_node("n")], [job])
    for s in (*snap.queued, *snap.running):
        s.reason = reason
    state.apply(snap)
    assert state.jobs["j"].reason == expected, name


def test_the_schedulers_own_events_leave_no_stale_reason_on_a_started_job() -> None:
    """The real scheduler queues a job ("waiting for the next scheduling cycle") and places
    it; the executor starts it: the job page must not say it waits."""
    clock = Clock()
    scheduler = SchedulerCore(build_profile(SchedulerSettings()), clock=clock)
    state = LiveState(clock=clock)
    node = make_node("n").gpus(2)
    out = [*scheduler.handle(node.inventory()),
           *scheduler.handle(SubmitJob(job=make_job("j").spec())), *scheduler.cycle()]
    for msg in out:
        state.apply(msg)
    events = [m for m in out if isinstance(m, JobEvent)]
    assert [e.state for e in events] == [S.QUEUED, S.PLACED]
    assert events[0].reason and "waiting" in events[0].reason  # there was a reason to clear
    started = JobEvent(job_id="j", state=S.STARTED, node="n", source="executor", ts=clock.now)
    state.apply(started)
    assert (state.jobs["j"].state, state.jobs["j"].reason) == (S.STARTED, None)


def test_heartbeats_fold_into_last_seen_and_are_not_listed() -> None:
    state = live()
    job = make_job("j").on("n", 0)
    for st, ts in [(S.QUEUED, 100.0), (S.PLACED, 101.0), (S.STARTED, 105.0),
                   *((S.HEARTBEAT, 105.0 + 10 * i) for i in range(1, 361))]:
        ev = job.event(st)
        ev.ts = ts
        state.apply(ev)
    record = state.jobs["j"]
    detail = core.job_detail(record)
    assert [e.state for e in detail.events] == ["queued", "placed", "started"]
    assert detail.job.last_seen == 105.0 + 3600 and record.state is S.STARTED
    assert detail.job.updated == 105.0  # a heartbeat is no change
    before = make_job("k")
    state.apply(before.event(S.QUEUED))
    assert core.job_view(state.jobs["k"]).last_seen is None  # not started: never seen running
