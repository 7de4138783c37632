"""One run: a stack per broker layout, steady load, the faults in turn, then the checks."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from chaos import check, history
from chaos.check import Alloc, JobOutcome, OverCommit, SampleFinding, Window
from chaos.config import CLUSTER_FAULTS, ChaosConfig
from chaos.faults import FAULTS, Ctx
from chaos.load import JobLoad, ProbeLoad
from chaos.stack import SERVICES, Stack

Say = Callable[[str], None]


@dataclass
class PhaseResult:
    """What one stack went through and what its history shows."""

    name: str
    windows: list[Window]
    probe_acked: list[tuple[str, int]] = field(default_factory=list)
    probe_failed: int = 0
    sample_findings: list[SampleFinding] = field(default_factory=list)
    fleet_duplicates: int = 0
    jobs: list[JobOutcome] = field(default_factory=list)
    offered_jobs: int = 0
    allocs: list[Alloc] = field(default_factory=list)
    over: list[OverCommit] = field(default_factory=list)
    dead_holds: dict[str, list[check.DeadHold]] = field(default_factory=dict)
    load_held: dict[str, str] = field(default_factory=dict)
    error: str = ""


async def run(cfg: ChaosConfig, folder: Path, say: Say = print) -> list[PhaseResult]:
    single = [f for f in cfg.faults if f not in CLUSTER_FAULTS]
    cluster = [f for f in cfg.faults if f in CLUSTER_FAULTS]
    out = []
    if single:
        out.append(await run_phase("single", 1, single, cfg, folder / "single", say))
    if cluster:
        out.append(await run_phase("cluster", 3, cluster, cfg, folder / "cluster", say))
    return out


async def run_phase(name: str, brokers: int, faults: list[str], cfg: ChaosConfig, folder: Path,
                    say: Say) -> PhaseResult:
    say(f"{name}: starting the stack ({brokers} broker{'s' if brokers > 1 else ''}, "
        f"{cfg.nodes} nodes) in {folder}")
    stack = Stack(cfg, folder, brokers=brokers, say=say)
    result = PhaseResult(name, [])
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []
    try:
        await stack.start()
        jobs = JobLoad(stack.api, f"chaos-{name}", cfg.jobs_per_s, cfg.job_s, cfg.gpus_per_node,
                       seed=cfg.seed)
        probe = ProbeLoad(stack.bus(), cfg.probe_nodes, cfg.probe_per_s)
        tasks = [asyncio.create_task(jobs.run(stop)), asyncio.create_task(probe.run(stop))]
        ctx = Ctx(stack, cfg)
        say(f"{name}: stack ready; steady load for {cfg.warmup_s:.0f}s")
        steady = Window("steady", time.time())
        await ctx.sleep(cfg.warmup_s)
        steady.healed, steady.recovery_s = time.time(), 0.0
        result.windows.append(steady)
        for fault in faults:
            result.windows[-1].end = time.time()
            w = Window(fault, time.time())
            result.windows.append(w)
            say(f"{name}: fault {fault}")
            await FAULTS[fault](ctx, w)
            w.healed = time.time()
            w.recovery_s = await stack.wait_ready([n for n, _ in SERVICES], cfg.ready_within_s)
            say(f"{name}: {fault}: "
                + (f"ready again in {w.recovery_s:.1f}s" if w.recovery_s is not None
                   else f"NOT ready within {cfg.ready_within_s:.0f}s"))
            w.idle = await idle_services(ctx, jobs, w.healed)
            await ctx.sleep(cfg.observe_s)
        result.windows[-1].end = time.time()
        for w in result.windows:
            w.crashes = [f"{n} exited with {how}" for t, n, how in stack.exits if w.holds(t)]
        stop.set()
        await asyncio.gather(*tasks)
        await settle(stack, jobs, probe, cfg, say)
        await analyse(result, stack, jobs, probe, cfg)
    except Exception as e:  # the report says what broke the run itself
        result.error = f"{type(e).__name__}: {e}"
        say(f"{name}: the run itself failed: {result.error}")
    finally:
        stop.set()
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(BaseException):
                await t
        await asyncio.to_thread(stack.stop)
    return result


async def idle_services(ctx: Ctx, jobs: JobLoad, since: float) -> list[str]:
    """Live services that showed no progress since ``since`` (the fault healed), waiting up
    to ``idle_after_s`` for each to show some: the api (a submission acknowledged), ingest (a
    probe row stored), and, once ingest moves, the fleet (a fleet row) and the scheduler (an
    event of its own)."""
    stack, cfg = ctx.stack, ctx.cfg
    deadline = time.time() + cfg.idle_after_s
    while True:
        idle = await _stalled(stack, jobs, since)
        if not idle or time.time() > deadline:
            return idle
        await ctx.sleep(2.0)


async def _stalled(stack: Stack, jobs: JobLoad, since: float) -> list[str]:
    assert stack.sup is not None
    live = [n for n, _ in SERVICES if stack.sup.alive(n)]
    idle: list[str] = []
    if "api" in live and jobs.acked_between(since, time.time())[0] == 0:
        idle.append("api")
    try:
        fresh = await asyncio.to_thread(history.freshest, stack.warehouse_url)
    except Exception:
        return idle + [n for n in ("ingest",) if n in live]  # nothing reached the warehouse
    if fresh["ingest"] < since:
        return idle + [n for n in ("ingest",) if n in live]
    return idle + [n for n in ("fleet", "scheduler") if n in live and fresh[n] < since]


async def settle(stack: Stack, jobs: JobLoad, probe: ProbeLoad, cfg: ChaosConfig,
                 say: Say) -> None:
    """Give the last jobs time to end and the last samples time to be stored."""
    say(f"load stopped; waiting up to {cfg.settle_s:.0f}s for the last jobs and samples")
    deadline = time.monotonic() + cfg.settle_s
    acked = {j.job_id for j in jobs.submissions if j.acked}
    while time.monotonic() < deadline:
        stack.poll()
        try:
            stored = await asyncio.to_thread(history.probe_rows, stack.warehouse_url)
            events, _ = await history.job_history(stack.bus())
        except Exception:
            await asyncio.sleep(2.0)
            continue
        outcomes = check.check_jobs({j: 0.0 for j in acked}, events, [])
        open_jobs = [o for o in outcomes if o.outcome in ("lost", "unfinished")]
        missing = [k for k in probe.acked if k not in stored]
        if not open_jobs and not missing:
            return
        await asyncio.sleep(3.0)


async def analyse(result: PhaseResult, stack: Stack, jobs: JobLoad, probe: ProbeLoad,
                  cfg: ChaosConfig) -> None:
    stored = await asyncio.to_thread(history.probe_rows, stack.warehouse_url)
    result.probe_acked = sorted(probe.acked)
    result.probe_failed = probe.failed
    result.sample_findings = check.check_samples(result.probe_acked, stored)
    result.fleet_duplicates = await asyncio.to_thread(history.warehouse_duplicates,
                                                      stack.warehouse_url)
    events, placements = await history.job_history(stack.bus())
    submitted = {s.job_id: s.at for s in jobs.submissions if s.acked}
    result.offered_jobs = len(jobs.submissions)
    result.jobs = check.check_jobs(submitted, events, placements)
    result.allocs = check.allocations(placements, events)
    result.over = check.over_commits(result.allocs)
    run_end = time.time()
    for w in result.windows:
        if w.died is not None:
            limit = cfg.lease_s + cfg.cycle_s
            result.dead_holds[w.fault] = check.dead_node_holds(
                result.allocs, w.died[0], w.died[1], limit, run_end)
        j_ok, j_all = jobs.acked_between(w.start, w.end)
        s_ok, s_all = probe.acked_between(w.start, w.end)
        result.load_held[w.fault] = f"jobs {_pct(j_ok, j_all)} samples {_pct(s_ok, s_all)}"


def _pct(ok: int, total: int) -> str:
    return f"{100 * ok // total}%" if total else "-"
