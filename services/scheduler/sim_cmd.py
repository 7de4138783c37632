"""``gpufleet sim``: replay a cluster trace through the placement policies (no Kafka).

Two methods: ``inflation`` (the FGD paper's: no departures, allocation ratio against arrived
demand, several seeds) and ``replay`` (arrivals and runtimes from the trace, with departures:
completion time, queueing delay, utilization). ``--loop off|on|compare`` replays with a
utilization profile per job and the closed loop's reclaim off, on, or both. Defaults to the
Alibaba GPU 2023 trace that ships with the package.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from itertools import repeat
from pathlib import Path

from services.ingest.analytics.policy import DEFAULT_POLICIES, parse_policies
from services.scheduler.cluster import NodeSpec
from services.scheduler.sim import report, variants
from services.scheduler.sim.inflation import Curve, inflate
from services.scheduler.sim.load import speedup_for
from services.scheduler.sim.loop import LoopConfig
from services.scheduler.sim.policies import DEFAULT, POLICIES, profile_for
from services.scheduler.sim.replay import Replay, replay
from services.scheduler.sim.trace import (
    DEFAULT_NODES,
    DEFAULT_TASKS,
    PAPER_RESULTS,
    Rejected,
    Task,
    TraceError,
    load_nodes,
    load_paper,
    read_trace,
)
from services.scheduler.sim.utilization import RESTARTABLE

SHOWN_REJECTIONS = 10


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--nodes", type=Path, default=DEFAULT_NODES, help="nodes CSV")
    parser.add_argument("--tasks", type=Path, default=DEFAULT_TASKS, help="tasks CSV")
    parser.add_argument("--policy", action="append", choices=sorted(POLICIES),
                        help=f"policy to run (repeat it); default: {', '.join(DEFAULT)}")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per policy (inflation)")
    parser.add_argument("--mode", choices=("inflation", "replay", "both"), default="inflation")
    parser.add_argument("--target", type=int, default=130, help="arrived demand %% to reach")
    parser.add_argument("--sample", type=int, default=0,
                        help="use only the first N tasks of the trace (0: all)")
    parser.add_argument("--node-every", type=int, default=1,
                        help="use every N-th node of the trace only (a smaller cluster)")
    parser.add_argument("--speedup", type=float, default=1.0,
                        help="replay: bring arrivals this many times closer (loads the cluster)")
    parser.add_argument("--tick", type=float, default=0.0,
                        help="replay: one scheduling cycle per this many simulated seconds "
                             "(0: one per event)")
    parser.add_argument("--plot", type=Path, default=Path("sim-allocation.png"),
                        help="where to write the PNG plot of the inflation run")
    parser.add_argument("--variant", type=str, default="",
                        help="a workload family made from the tasks: share:P, multigpu:P, "
                             "gpuspec:P or cpu:P (see docs/scheduler.md)")
    parser.add_argument("--variant-seed", type=int, default=0, help="seed of the variant")
    parser.add_argument("--write-variant", type=Path, default=None,
                        help="write the variant's tasks to this CSV and stop")
    parser.add_argument("--jobs", type=int, default=1,
                        help="inflation runs at once, one process each")
    parser.add_argument("--json", action="store_true", help="print the raw results as JSON")
    loop = parser.add_argument_group("closed loop (replay)")
    loop.add_argument("--loop", choices=("off", "on", "compare"), default=None,
                      help="replay with a utilization profile per job and reclaim off, on, or "
                           "both (implies --mode replay)")
    loop.add_argument("--load", type=float, default=0.0,
                      help="replay: set the speedup so that the offered GPU load over the "
                           "arrival window is this %% of capacity (e.g. 130)")
    loop.add_argument("--reclaim-policies", default=DEFAULT_POLICIES,
                      help="reclaim policies, as GPUFLEET_RECLAIM_POLICIES (default: %(default)s)")
    loop.add_argument("--profile-seed", type=int, default=0, help="seed of the profiles")
    loop.add_argument("--restartable", type=float, default=RESTARTABLE,
                      help="share of jobs that may be requeued (default: %(default)s)")


def _progress(label: str, quiet: bool) -> Callable[[int, int], None]:
    def show(done: int, total: int) -> None:
        if not quiet:
            print(f"\r{label}: {done}/{total}", end="", file=sys.stderr, flush=True)
    return show


def _inflate_one(policy: str, seed: int, nodes: list[NodeSpec], tasks: list[Task],
                 target: int) -> Curve:
    return inflate(policy, profile_for(policy, tasks), nodes, tasks, seed, target)


def _say_rejected(rejected: list[Rejected], path: Path) -> None:
    if not rejected:
        return
    print(f"{path}: {len(rejected)} row(s) left out, as the scheduler would reject them:",
          file=sys.stderr)
    for r in rejected[:SHOWN_REJECTIONS]:
        print(f"  line {r.line} ({r.name}): {r.reason}", file=sys.stderr)
    if len(rejected) > SHOWN_REJECTIONS:
        print(f"  ... and {len(rejected) - SHOWN_REJECTIONS} more", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    try:
        nodes = load_nodes(args.nodes)[:: max(args.node_every, 1)]
        trace = read_trace(args.tasks, nodes)
        tasks = trace.tasks
        if args.variant:
            tasks = variants.make(tasks, nodes, args.variant, args.variant_seed)
    except (TraceError, variants.VariantError) as e:
        print(f"gpufleet sim: {e}", file=sys.stderr)
        return 2
    _say_rejected(trace.rejected, args.tasks)
    if args.write_variant is not None:
        variants.write(tasks, args.write_variant)
        print(f"{len(tasks)} tasks written to {args.write_variant}")
        return 0
    if args.sample:
        tasks = tasks[: args.sample]
    try:
        loops = _loops(args)
        speedup = args.speedup if args.load <= 0 else speedup_for(
            tasks, sum(n.gpus for n in nodes) * 1000, args.load / 100)
    except ValueError as e:
        print(f"gpufleet sim: {e}", file=sys.stderr)
        return 2
    if loops:
        args.mode = "replay"
    policies = args.policy or list(DEFAULT)
    # The paper's figures belong to its own cluster and trace, whole and unchanged.
    paper_setup = (args.nodes == DEFAULT_NODES and args.node_every <= 1
                   and args.tasks == DEFAULT_TASKS and not args.variant and not args.sample)
    paper = load_paper(PAPER_RESULTS) if paper_setup else {}
    curves: list[Curve] = []
    replays: list[Replay] = []
    if args.mode in ("inflation", "both") and args.jobs > 1:
        runs = [(p, s) for p in policies for s in range(args.seeds)]
        with ProcessPoolExecutor(args.jobs) as pool:
            curves += pool.map(_inflate_one, *zip(*runs, strict=True), repeat(nodes),
                               repeat(tasks), repeat(args.target))
    elif args.mode in ("inflation", "both"):
        for policy in policies:
            profile = profile_for(policy, tasks)
            for seed in range(args.seeds):
                label = f"inflation {policy} seed {seed + 1}/{args.seeds}"
                curves.append(inflate(policy, profile, nodes, tasks, seed, args.target,
                                      _progress(label, args.json)))
    if args.mode in ("replay", "both"):
        for policy in policies:
            loop_runs: list[LoopConfig | None] = [*loops] or [None]
            for loop in loop_runs:
                label = f"replay {policy}" + (f" loop {'on' if loop.reclaim else 'off'}"
                                              if loop else "")
                replays.append(replay(policy, nodes, tasks, _progress(label, args.json),
                                      speedup, args.tick, loop))
    if not args.json:
        print("\r", end="", file=sys.stderr)
    if args.json:
        raw = report.raw(curves, replays)
        raw["rejected"] = [{"line": r.line, "name": r.name, "reason": r.reason}
                           for r in trace.rejected]
        print(json.dumps(raw))
        return 0
    if curves:
        print(f"GPU allocation ratio (%) by arrived GPU demand, mean of {args.seeds} seed(s); "
              f"{len(nodes)} nodes, {len(tasks)} trace tasks")
        print(report.inflation_table(curves, paper, args.target))
        report.plot(curves, paper, args.plot)
        print(f"plot: {args.plot}")
    if replays:
        print(f"\nTime-based replay (arrivals and runtimes from the trace, with departures; "
              f"speedup {speedup:.1f}; {len(nodes)} nodes, "
              f"{sum(n.gpus for n in nodes)} GPUs)")
        print(report.replay_table(replays))
    if loops:
        print(f"\nClosed loop (profile seed {args.profile_seed}, restartable "
              f"{args.restartable:.0%}, policies: {args.reclaim_policies})")
        print(report.loop_table(replays))
    return 0


def _loops(args: argparse.Namespace) -> list[LoopConfig]:
    """The loop runs asked for (none without ``--loop``); bad policies raise ValueError."""
    if args.loop is None:
        return []
    parse_policies(args.reclaim_policies)
    if not 0 <= args.restartable <= 1:
        raise ValueError(f"--restartable {args.restartable}: must be within 0..1")
    base = LoopConfig(policies=args.reclaim_policies, seed=args.profile_seed,
                      restartable=args.restartable)
    on = LoopConfig(reclaim=True, policies=base.policies, seed=base.seed,
                    restartable=base.restartable)
    return {"off": [base], "on": [on], "compare": [base, on]}[args.loop]
