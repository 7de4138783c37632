"""Scheduler: placement decisions per second and decision latency at 1,000, 10,000 and 100,000
GPUs with 10,000 jobs pending (the default plugins: FGD, best fit, topology, fair share, quota,
preemption, backfill); and the simulator's headline allocation ratios at 130 % demand.

Each size is measured twice: by the wall clock, and by the thread's CPU clock, which leaves out
the time the process waited for a core (on a shared machine the wall-clock p99 is mostly that).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from bench.report import Result
from gpufleet.contracts import JobSpec, SubmitJob
from services.scheduler.cluster import Cluster, NodeSpec
from services.scheduler.config import SchedulerSettings
from services.scheduler.core import SchedulerCore
from services.scheduler.profile import build_profile
from services.scheduler.sim.inflation import inflate
from services.scheduler.sim.policies import DEFAULT, PAPER_NAME, profile_for
from services.scheduler.sim.trace import load_nodes, load_paper, load_tasks

PENDING = 10_000


def _spec(i: int, rng: np.random.Generator, cpu_sizes: int = 0) -> JobSpec:
    r = rng.random()
    gpus, milli = (1, int(rng.integers(1, 10)) * 100) if r < 0.2 else (
        (1, 1000) if r < 0.8 else (int(rng.choice([2, 4, 8])), 1000))
    cpu = int(rng.integers(1, cpu_sizes + 1)) * 1000 if cpu_sizes else 0
    return JobSpec(job_id=f"j{i}", gpus=gpus, gpu_milli=milli, tenant=f"t{i % 4}",
                   priority=int(rng.choice([0, 0, 0, 1])), cpu_milli=cpu,
                   est_runtime_s=float(rng.uniform(60, 600)))


def _core(gpus: int, timer: Callable[[], float]) -> SchedulerCore:
    cluster = Cluster()
    for n in range(gpus // 8):
        cluster.upsert(NodeSpec(f"n{n:05d}", "H100", 8, 128_000, 1 << 20,
                                domains=(0, 0, 0, 0, 1, 1, 1, 1)))
    return SchedulerCore(build_profile(SchedulerSettings()), clock=time.time, cluster=cluster,
                         timer=timer)


def decisions(gpus: int, timer: Callable[[], float] = time.perf_counter,
              cpu_sizes: int = 0) -> list[Result]:
    """Queue 10,000 jobs, then run cycles (finishing a tenth of the running jobs between
    them) until 10,000 decisions were made by the full pipeline. With ``cpu_sizes``, each job
    asks for 1 to that many CPUs, so FGD sees that many times more task kinds."""
    core = _core(gpus, timer)
    rng = np.random.default_rng(0)
    for i in range(PENDING):
        core.handle(SubmitJob(job=_spec(i, rng, cpu_sizes)))
    latencies: list[float] = []
    decided = placed = 0
    busy = 0.0
    while len(latencies) < PENDING and busy < 60:
        started = timer()
        core.cycle()
        busy += timer() - started
        latencies += core.last.latencies
        decided += core.last.decisions
        placed += core.last.placed
        running = list(core.running)
        for job_id in running[: max(len(running) // 10, 1)]:
            core.free(job_id)
        for i in range(core.last.placed):  # keep 10,000 pending
            core.handle(SubmitJob(job=_spec(PENDING + placed + i, rng, cpu_sizes)))
    lat = np.array(latencies) * 1000
    clock = "CPU clock" if timer is time.thread_time else "wall clock"
    area = f"scheduler {gpus:,} GPUs, {clock}" + (
        f", jobs of 1-{cpu_sizes} CPUs" if cpu_sizes else "")
    aim_rate = {10_000: "≥ 5,000/s", 100_000: "≥ 1,000/s"}.get(gpus, "")
    aim_p99 = "< 5 ms" if gpus in (10_000, 100_000) else ""
    return [
        Result(area, "placement attempts (full pipeline) per second", len(lat) / busy, "1/s",
               aim_rate, f"{PENDING:,} pending; {placed:,} placed"),
        Result(area, "jobs decided per second (incl. shapes known to fail)", decided / busy,
               "1/s"),
        Result(area, "decision latency p50", float(np.percentile(lat, 50)), "ms"),
        Result(area, "decision latency p99", float(np.percentile(lat, 99)), "ms", aim_p99),
    ]


def headline(quick: bool) -> list[Result]:
    nodes, tasks = load_nodes(), load_tasks()
    paper = load_paper()
    seeds = 1 if quick else 3
    out = []
    for policy in DEFAULT:
        profile = profile_for(policy, tasks)
        ratio = float(np.mean([inflate(policy, profile, nodes, tasks, s).at(130)
                               for s in range(seeds)]))
        ref = paper.get(PAPER_NAME.get(policy, ""), {}).get(130)
        out.append(Result("sim alibaba-2023 @130%", f"{policy} GPU allocation ratio", ratio, "%",
                          "≥ 95.39 (FGD paper)" if policy.startswith("fgd") else "",
                          f"{seeds} seed(s); paper {ref:.2f}" if ref else f"{seeds} seed(s)"))
    return out


def run(quick: bool) -> list[Result]:
    results: list[Result] = []
    for gpus in (1_000, 10_000, 100_000):
        for timer in (time.perf_counter, time.thread_time):
            results += decisions(gpus, timer)
    # Many task kinds (one per GPU request and CPU size): FGD's worst case at the largest size.
    results += decisions(100_000, time.thread_time, cpu_sizes=64)
    return results + headline(quick)
