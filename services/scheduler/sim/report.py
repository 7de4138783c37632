"""The simulator's output: tables, a PNG plot, and the raw results as JSON."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from services.scheduler.sim.inflation import Curve
from services.scheduler.sim.policies import PAPER_NAME
from services.scheduler.sim.replay import Replay

MARKS = (50, 80, 100, 110, 120, 130)


def mean_curve(curves: Sequence[Curve]) -> list[tuple[int, float]]:
    pcts = sorted({p for c in curves for p, _ in c.points})
    return [(p, statistics.fmean(c.at(p) for c in curves)) for p in pcts]


def by_policy(curves: Sequence[Curve]) -> dict[str, list[Curve]]:
    out: dict[str, list[Curve]] = {}
    for c in curves:
        out.setdefault(c.policy, []).append(c)
    return out


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(r: Sequence[str]) -> str:
        return "| " + " | ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) + " |"

    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|",
                      *map(line, rows)])


def inflation_table(curves: Sequence[Curve], paper: Mapping[str, Mapping[int, float]],
                    target: int) -> str:
    """Our allocation ratio at each mark (mean of seeds, and the spread of the seeds at the
    target), next to the paper's when ``paper`` has figures (its own trace only)."""
    header = ["policy", "seeds", *(f"{m}%" for m in MARKS if m <= target), f"min-max@{target}"]
    if paper:
        header += ["paper@" + str(target), "ours-paper"]
    rows = []
    for policy, group in by_policy(curves).items():
        mean = dict(mean_curve(group))
        at = [c.at(target) for c in group]
        ours = mean.get(target, 0.0)
        row = [policy, str(len(group)), *(f"{mean.get(m, 0.0):.2f}" for m in MARKS if m <= target),
               f"{min(at):.2f}-{max(at):.2f}"]
        if paper:
            ref = paper.get(PAPER_NAME.get(policy, ""), {}).get(target)
            row += [f"{ref:.2f}" if ref is not None else "-",
                    f"{ours - ref:+.2f}" if ref is not None else "-"]
        rows.append(row)
    return _table(header, rows)


def _pct(values: Sequence[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def replay_table(replays: Sequence[Replay]) -> str:
    header = ["policy", "jobs", "done", "JCT mean s", "JCT p95 s", "queue mean s",
              "queue p95 s", "GPU util %"]
    rows = []
    for r in replays:
        jct = [j.jct_s for j in r.jobs if j.jct_s is not None]
        wait = [j.queue_s for j in r.jobs if j.queue_s is not None]
        rows.append([r.policy, str(len(r.jobs)), str(len(jct)),
                     f"{statistics.fmean(jct) if jct else 0:.0f}", f"{_pct(jct, 0.95):.0f}",
                     f"{statistics.fmean(wait) if wait else 0:.1f}", f"{_pct(wait, 0.95):.1f}",
                     f"{r.utilization_pct:.1f}"])
    return _table(header, rows)


def loop_table(replays: Sequence[Replay]) -> str:
    """The closed loop off and on: busy share, reclaims, queueing delay, completion time; the
    reclaims of jobs whose profile is busy (never, if the loop is right), and the fewest
    minutes of idle GPUs that led to a reclaim."""
    header = ["run", "jobs", "busy share %", "alloc GPU-h", "reclaimed GPU-h", "queue p50 s",
              "queue p99 s", "JCT mean s", "JCT p50 s", "JCT p99 s", "reclaims (requeued)",
              "jobs disrupted", "stopped", "busy jobs reclaimed", "min idle min"]
    rows = []
    for r in replays:
        if r.usage is None:
            continue
        u = r.usage
        jct = [j.jct_s for j in r.jobs if j.jct_s is not None]
        wait = [j.queue_s for j in r.jobs if j.queue_s is not None]
        requeued = sum(1 for x in u.reclaims if x.requeue)
        rows.append([f"{r.policy}, {r.label}", str(len(r.jobs)), f"{u.busy_share_pct:.1f}",
                     f"{u.allocated_gpu_s / 3600:.0f}",
                     f"{sum(x.freed_gpu_s for x in u.reclaims) / 3600:.0f}",
                     f"{_pct(wait, 0.5):.0f}", f"{_pct(wait, 0.99):.0f}",
                     f"{statistics.fmean(jct) if jct else 0:.0f}", f"{_pct(jct, 0.5):.0f}",
                     f"{_pct(jct, 0.99):.0f}", f"{len(u.reclaims)} ({requeued})",
                     str(len({x.job_id for x in u.reclaims})),
                     str(sum(1 for j in r.jobs if j.stopped)),
                     str(sum(1 for x in u.reclaims if x.kind == "busy")),
                     str(min((x.idle_min for x in u.reclaims), default="-"))])
    return _table(header, rows)


def plot(curves: Sequence[Curve], paper: Mapping[str, Mapping[int, float]], path: Path) -> None:
    """Allocation ratio against arrived demand, ours solid, the paper's dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for policy, group in by_policy(curves).items():
        xs, ys = zip(*mean_curve(group), strict=True)
        (line,) = ax.plot(xs, ys, label=f"{policy} (ours)")
        ref = paper.get(PAPER_NAME.get(policy, ""))
        if ref:
            pts = sorted(ref.items())
            ax.plot([p for p, _ in pts], [v for _, v in pts], "--", color=line.get_color(),
                    alpha=0.6, label=f"{PAPER_NAME[policy]} (paper)")
    ax.set_xlabel("arrived GPU demand (% of capacity)")
    ax.set_ylabel("GPU allocation ratio (%)")
    ax.set_xlim(60, max(x for c in curves for x, _ in c.points))
    ax.set_ylim(55, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def raw(curves: Sequence[Curve], replays: Sequence[Replay]) -> dict[str, Any]:
    return {
        "inflation": [{"policy": c.policy, "seed": c.seed, "placed": c.placed,
                       "skipped": c.skipped,
                       "points": [{"arrived_demand_pct": p, "allocation_ratio_pct": round(v, 4)}
                                  for p, v in c.points]} for c in curves],
        "replay": [{"policy": r.policy, "utilization_pct": r.utilization_pct,
                    "loop": r.label or None,
                    "busy_share_pct": r.usage.busy_share_pct if r.usage else None,
                    "reclaims": [{"job_id": x.job_id, "attempt": x.attempt, "at": x.at,
                                  "requeue": x.requeue, "kind": x.kind, "idle_min": x.idle_min,
                                  "freed_gpu_s": x.freed_gpu_s}
                                 for x in (r.usage.reclaims if r.usage else [])],
                    "jobs": [{"job_id": j.job_id, "arrival": j.arrival, "start": j.start,
                              "end": j.end, "queue_s": j.queue_s, "jct_s": j.jct_s,
                              "profile": j.kind or None, "attempts": j.attempts,
                              "stopped": j.stopped}
                             for j in r.jobs]} for r in replays],
    }
