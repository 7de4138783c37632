"""The closed loop in the simulator: the reclaim core over windows made from profiles, acting
through the scheduler core. Above all: a job that keeps its GPUs busy is never reclaimed."""

from __future__ import annotations

from dataclasses import replace

import pytest

from gpufleet.cli import main
from gpufleet.contracts import GpuUtilWindow, ReclaimRequest
from services.ingest.analytics.jobs import JobRecord
from services.ingest.analytics.policy import ReclaimPolicy, parse_policies
from services.ingest.analytics.reclaim import ReclaimState, observe
from services.scheduler.cluster import NodeSpec
from services.scheduler.sim.load import offered_load, speedup_for
from services.scheduler.sim.loop import LoopConfig, to_feed
from services.scheduler.sim.replay import Replay, replay
from services.scheduler.sim.trace import DEFAULT_TASKS, Task, load_nodes, read_trace
from services.scheduler.sim.utilization import Phase, Profile, draw


def _default_policy() -> ReclaimPolicy:
    policy = parse_policies(LoopConfig().policies).default
    assert policy is not None
    return policy


POLICY = _default_policy()
LIMIT_MIN = int((POLICY.idle_timeout_s + POLICY.grace_s) // 60)  # 40 under the default


def flat(*spans: tuple[int, float]) -> Profile:
    """A profile from (minutes, level) spans, one after another."""
    phases, at = [], 0
    for minutes, level in spans:
        phases.append(Phase(at, at + minutes, level, level))
        at += minutes
    return Profile("bursty", tuple(phases), restartable=True)


def reclaim_minute(windows: list[tuple[int, float]]) -> int | None:
    """The minute whose window makes the reclaim core ask for a reclaim, or None."""
    rec = JobRecord(job_id="j", restartable=True)
    state: ReclaimState | None = None
    for minute, level in windows:
        w = GpuUtilWindow(cluster="c", node="n", gpu=0, window_start=minute * 60.0,
                          samples=60, util_mean=level, util_min=level, util_max=level,
                          util_p95=level, job_id="j")
        state, out = observe(state, rec, POLICY, w)
        if any(isinstance(m, ReclaimRequest) for m in out):
            return minute
    return None


CASES = [
    # name, profile, the minute of the reclaim (None: never)
    ("busy all along", flat((600, 80.0)), None),
    ("busy at the threshold", flat((600, 5.0)), None),
    ("idle from the start", flat((600, 1.0)), LIMIT_MIN - 1),
    ("just under the threshold", flat((600, 4.9)), LIMIT_MIN - 1),
    ("gaps one minute short of the limit", flat(*[(20, 70.0), (LIMIT_MIN - 1, 0.0)] * 8), None),
    ("a gap as long as the limit", flat((30, 70.0), (LIMIT_MIN, 0.0), (30, 70.0)),
     30 + LIMIT_MIN - 1),
    ("a one-minute burst resets the count", flat((35, 0.0), (1, 90.0), (35, 0.0)), None),
    ("a slow start, then busy", Profile("ramping", (Phase(0, 20, 1, 1), Phase(20, 40, 1, 90),
                                                    Phase(40, 500, 90, 90)), True), None),
]


@pytest.mark.parametrize(("name", "profile", "minute"), CASES, ids=[c[0] for c in CASES])
def test_the_reclaim_core_over_a_profile(name: str, profile: Profile, minute: int | None) -> None:
    every = list(profile.minutes_of(0, profile.minutes))
    assert reclaim_minute(every) == minute
    # The windows the simulator feeds (a flat busy phase: first and last) decide the same.
    assert reclaim_minute(list(to_feed(profile, 0, profile.minutes, POLICY.min_util))) == minute


@pytest.mark.parametrize("seed", range(30))
def test_fewer_windows_decide_the_same_as_every_minute(seed: int) -> None:
    p = draw(f"bursty-{seed}", 6 * 3600, seed, mix={"bursty": 1.0})
    assert reclaim_minute(list(p.minutes_of(0, p.minutes))) == reclaim_minute(
        list(to_feed(p, 0, p.minutes, POLICY.min_util)))


NODE = NodeSpec("n0", "V100", 8, 96_000, 512 * 1024)


def task(name: str, created: float, runtime: float, gpus: int = 1) -> Task:
    return Task(name=name, cpu_milli=1000, memory_mib=1024, num_gpu=gpus, gpu_milli=1000,
                models=(), created=created, deleted=created + runtime, runtime=runtime)


def test_on_one_node_the_idle_job_makes_room_and_the_busy_ones_run_on() -> None:
    hour = 3600.0
    tasks = [task("busy", 0, 5 * hour, gpus=4), task("idle", 1, 5 * hour, gpus=4),
             task("waiting", 3 * hour, hour, gpus=4)]
    profiles = {"busy": flat((300, 90.0)), "idle": flat((300, 0.5)),
                "waiting": flat((60, 90.0))}
    off = replay("bestfit", [NODE], tasks, loop=LoopConfig(), profiles=profiles)
    on = replay("bestfit", [NODE], tasks, loop=LoopConfig(reclaim=True), profiles=profiles)
    assert off.usage is not None and on.usage is not None
    assert off.usage.reclaims == []
    [r] = on.usage.reclaims
    assert (r.job_id, r.requeue, r.idle_min, r.at) == ("idle", True, LIMIT_MIN,
                                                       1 + LIMIT_MIN * 60)
    # Requeued, it had no busy minute left: it ended as soon as it was placed again, and its
    # 4 GPUs sat free until "waiting" came (idle GPU time spared to the window's end, 3 h).
    assert r.freed_gpu_s == pytest.approx(4 * (3 * hour - 1 - LIMIT_MIN * 60), abs=4 * 60)
    times = {j.job_id: j for j in on.jobs}
    assert times["busy"].attempts == 1 and times["idle"].attempts == 2
    assert times["waiting"].queue_s == 0
    assert {j.job_id: j.queue_s for j in off.jobs}["waiting"] == pytest.approx(2 * hour)
    # Over the arrival window (0-3 h): half busy without the loop; with it, the idle job's
    # GPUs count for its 40 minutes only.
    assert off.usage.busy_share_pct == pytest.approx(50, abs=0.5)
    assert on.usage.busy_share_pct == pytest.approx(100 * 3 / (3 + 2 / 3), abs=0.5)


def test_a_job_that_may_not_restart_is_stopped() -> None:
    tasks = [task("idle", 0, 3600.0)]
    profiles = {"idle": Profile("idle", (Phase(0, 60, 0.0, 0.0),), restartable=False)}
    on = replay("bestfit", [NODE], tasks, loop=LoopConfig(reclaim=True), profiles=profiles)
    [job] = on.jobs
    assert job.stopped and job.jct_s is None and job.end == pytest.approx(LIMIT_MIN * 60)


SAMPLE_NODES = load_nodes()[::300]
# Trace tasks with runtimes cut to 6 h, so that a replay takes a second or two.
SAMPLE = [replace(t, runtime=min(t.runtime_s or 1.0, 6 * 3600.0))
          for t in read_trace(DEFAULT_TASKS, SAMPLE_NODES).tasks[:300]]


@pytest.fixture(scope="module")
def loop_runs() -> dict[bool, Replay]:
    speedup = speedup_for(SAMPLE, sum(n.gpus for n in SAMPLE_NODES) * 1000, 0.5)
    return {on: replay("bestfit", SAMPLE_NODES, SAMPLE, speedup=speedup, tick_s=60.0,
                       loop=LoopConfig(reclaim=on)) for on in (False, True)}


def test_no_job_that_keeps_its_gpus_busy_is_ever_reclaimed(loop_runs: dict[bool, Replay]) -> None:
    on = loop_runs[True]
    assert on.usage is not None
    reclaims = on.usage.reclaims
    assert reclaims, "the sample must have idle jobs to reclaim, or this proves nothing"
    assert all(r.kind != "busy" for r in reclaims)
    assert all(r.idle_min >= LIMIT_MIN for r in reclaims)
    by_job = {j.job_id: j for j in on.jobs}
    busy_jobs = [j for j in on.jobs if j.kind == "busy"]
    assert busy_jobs and all(j.attempts == 1 and not j.stopped for j in busy_jobs)
    assert {r.job_id for r in reclaims} <= set(by_job)


def test_the_loop_off_reclaims_nothing_and_both_finish_every_job(
        loop_runs: dict[bool, Replay]) -> None:
    off, on = loop_runs[False], loop_runs[True]
    assert off.usage is not None and not off.usage.reclaims and on.usage is not None
    assert all(j.end is not None for j in off.jobs) and all(j.end is not None for j in on.jobs)
    assert on.usage.busy_share_pct > off.usage.busy_share_pct


def test_the_replay_is_deterministic() -> None:
    def run() -> list[tuple[str, float | None, float | None]]:
        r = replay("bestfit", SAMPLE_NODES, SAMPLE, speedup=2000.0, tick_s=60.0,
                   loop=LoopConfig(reclaim=True))
        return [(j.job_id, j.start, j.end) for j in r.jobs]
    assert run() == run()


@pytest.mark.parametrize("load", [0.2, 0.4, 0.55])
def test_the_speedup_for_a_load_gives_that_load(load: float) -> None:
    capacity = sum(n.gpus for n in SAMPLE_NODES) * 1000
    assert offered_load(SAMPLE, capacity, speedup_for(SAMPLE, capacity, load)) == pytest.approx(
        load, rel=1e-3)


def test_a_load_the_tasks_cannot_reach_is_refused() -> None:
    with pytest.raises(ValueError, match="cannot reach 500%"):
        speedup_for(SAMPLE, sum(n.gpus for n in SAMPLE_NODES) * 1000, 5.0)


def test_the_command_prints_the_loop_table(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["sim", "--loop", "compare", "--policy", "bestfit", "--node-every", "300",
                 "--sample", "120", "--speedup", "2000", "--tick", "60", "--restartable", "0"])
    out = capsys.readouterr().out
    assert code == 0
    assert "bestfit, loop off" in out and "bestfit, loop on" in out and "busy share %" in out


@pytest.mark.parametrize(("args", "says"), [
    (["--reclaim-policies", "default: idle_timeout=soon"], "idle_timeout=soon"),
    (["--restartable", "1.5"], "--restartable 1.5"),
    (["--load", "900"], "cannot reach 900%"),
])
def test_the_command_refuses_bad_loop_settings(args: list[str], says: str,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["sim", "--loop", "on", "--node-every", "300", "--sample", "50", *args])
    assert code == 2
    assert says in capsys.readouterr().err
