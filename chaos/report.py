"""The table (one row per fault window) and the last line; which invariant each fault broke."""

from __future__ import annotations

from dataclasses import dataclass, field

from chaos.check import Window
from chaos.config import ChaosConfig
from chaos.run import PhaseResult


@dataclass
class Row:
    phase: str
    fault: str
    load: str = "-"
    published: int = 0
    stored: int = 0
    duplicated: int = 0
    missing: int = 0
    submitted: int = 0
    placed: int = 0
    lost: int = 0
    jobs_duplicated: int = 0
    over: int = 0
    crashes: int = 0
    recovery: str = "-"
    broken: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def rows(result: PhaseResult, cfg: ChaosConfig) -> list[Row]:
    out = []
    for w in result.windows:
        r = Row(result.name, w.fault, result.load_held.get(w.fault, "-"))
        r.published = sum(1 for _, ms in result.probe_acked if w.holds(ms / 1000.0))
        in_w = [f for f in result.sample_findings if w.holds(f.at)]
        r.missing = sum(1 for f in in_w if f.stored == 0)
        r.duplicated = sum(f.stored - 1 for f in in_w if f.stored > 1)
        r.stored = r.published - r.missing
        jobs = [j for j in result.jobs if w.holds(j.submitted_at)]
        r.submitted = len(jobs)
        r.placed = sum(1 for j in jobs if j.placements)
        went_wrong = [j for j in result.jobs if w.holds(j.at)]
        r.lost = sum(1 for j in went_wrong if j.outcome in ("lost", "unfinished"))
        r.jobs_duplicated = sum(j.duplicated for j in went_wrong)
        r.over = sum(1 for o in result.over if w.holds(o.at))
        r.recovery = f"{w.recovery_s:.1f}" if w.recovery_s is not None else "never"
        r.broken = broken(w, result, r, cfg)
        r.crashes = len(w.crashes)
        r.notes = list(w.notes) + _counted(w.crashes)
        out.append(r)
    return out


def broken(w: Window, result: PhaseResult, r: Row, cfg: ChaosConfig) -> list[str]:
    """The invariants this window broke, each in a few words."""
    out = []
    if r.missing:
        out.append(f"{r.missing} acked samples missing")
    if r.duplicated:
        out.append(f"{r.duplicated} samples stored twice")
    lost = [j for j in result.jobs if w.holds(j.at) and j.outcome == "lost"]
    stuck = [j for j in result.jobs if w.holds(j.at) and j.outcome == "unfinished"]
    if lost:
        out.append(f"{len(lost)} jobs lost (e.g. {lost[0].job_id})")
    if stuck:
        out.append(f"{len(stuck)} jobs placed, never finished (e.g. {stuck[0].job_id})")
    if r.jobs_duplicated:
        out.append(f"{r.jobs_duplicated} placements twice for one attempt")
    if r.over:
        first = next(o for o in result.over if w.holds(o.at))
        out.append(f"{r.over} GPU over-commits (e.g. {first.node} gpu {first.gpu}: "
                   f"{first.milli}/1000 by {', '.join(first.jobs)})")
    holds = result.dead_holds.get(w.fault, [])
    if holds:
        worst = max(holds, key=lambda h: h.held_s)
        out.append(f"{len(holds)} GPUs of dead nodes held past lease+cycle "
                   f"({cfg.lease_s + cfg.cycle_s:.0f}s; worst {worst.held_s:.0f}s, "
                   f"{worst.job_id})")
    if w.recovery_s is None:
        out.append(f"not ready within {cfg.ready_within_s:.0f}s")
    if w.idle:
        out.append(f"alive but idle: {', '.join(w.idle)}")
    return out


HEADER = ("phase", "fault", "load held", "samples pub", "stored", "dup", "missing",
          "jobs sub", "placed", "lost", "dup", "over-commits", "crashes", "recovery s")


def _counted(lines: list[str]) -> list[str]:
    """``["a", "a", "b"]`` -> ``["a (2x)", "b"]``, in first-seen order."""
    counts: dict[str, int] = {}
    for line in lines:
        counts[line] = counts.get(line, 0) + 1
    return [f"{k} ({c}x)" if c > 1 else k for k, c in counts.items()]


def table(all_rows: list[Row], results: tuple[PhaseResult, ...] = ()) -> str:
    cells = [HEADER] + [
        (r.phase, r.fault, r.load, str(r.published), str(r.stored), str(r.duplicated),
         str(r.missing), str(r.submitted), str(r.placed), str(r.lost), str(r.jobs_duplicated),
         str(r.over), str(r.crashes), r.recovery) for r in all_rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(HEADER))]
    lines = ["  ".join(c[i].ljust(widths[i]) for i in range(len(HEADER))) for c in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    notes = [f"  {r.phase}/{r.fault}: {'; '.join(r.notes)}" for r in all_rows if r.notes]
    if notes:
        lines += ["", "faults:", *notes]
    broken_lines = [f"  {r.phase}/{r.fault}: {'; '.join(r.broken)}" for r in all_rows
                    if r.broken]
    broken_lines += [f"  {p.name}: {p.fleet_duplicates} fleet sample rows stored twice"
                     for p in results if p.fleet_duplicates]
    if broken_lines:
        lines += ["", "invariants broken:", *broken_lines]
    return "\n".join(lines)


def last_line(results: list[PhaseResult], all_rows: list[Row]) -> str:
    faults = sum(1 for r in all_rows if r.fault != "steady")
    samples = sum(len(p.probe_acked) for p in results)
    jobs = sum(len(p.jobs) for p in results)
    lost = sum(r.missing + r.lost for r in all_rows)
    duplicated = sum(r.duplicated + r.jobs_duplicated for r in all_rows)
    duplicated += sum(p.fleet_duplicates for p in results)
    over = sum(r.over for r in all_rows)
    return (f"chaos: {faults} faults, {samples} samples, {jobs} jobs, {lost} lost, "
            f"{duplicated} duplicated, {over} over-committed")


def failed(results: list[PhaseResult], all_rows: list[Row]) -> bool:
    return (any(p.error or p.fleet_duplicates for p in results)
            or any(r.broken for r in all_rows))
