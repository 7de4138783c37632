"""The invariants, as pure functions over what a run left behind (see ``history``):

- samples: every probe sample the broker acknowledged is in the raw table exactly once;
- jobs: every acknowledged submission ends exactly one of finished, queued or rejected; never
  placed twice for one attempt; never silently lost;
- over-commit: replaying placements and the events that free them, no GPU is ever given more
  than one whole GPU (1000 thousandths);
- dead nodes: a job of a node that died lets its GPUs go within the lease plus one cycle.

Each finding carries a time, so the report can say which fault's window it fell in.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from gpufleet.contracts import (
    DUPLICATE_JOB_ID,
    TERMINAL_STATES,
    JobEvent,
    JobState,
    Placement,
)

FULL = 1000  # one whole GPU, in thousandths
FINISHED = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED,
                      JobState.PREEMPTED})


# -- samples ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SampleFinding:
    node: str
    ms: int  # the sample's timestamp, milliseconds
    stored: int  # rows found: 0 is missing, 2 or more duplicated

    @property
    def at(self) -> float:
        return self.ms / 1000.0


def check_samples(acked: Iterable[tuple[str, int]], stored: dict[tuple[str, int], int]
                  ) -> list[SampleFinding]:
    """Acknowledged probe samples stored other than exactly once; and any stored twice."""
    out = [SampleFinding(n, ms, stored.get((n, ms), 0)) for n, ms in acked
           if stored.get((n, ms), 0) != 1]
    acked_set = set(acked)
    out += [SampleFinding(n, ms, c) for (n, ms), c in stored.items()
            if c > 1 and (n, ms) not in acked_set]
    return sorted(out, key=lambda f: f.ms)


# -- jobs ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class JobOutcome:
    job_id: str
    submitted_at: float
    outcome: str  # finished, queued, rejected, given-up, unfinished, lost
    placements: int  # placements seen over all attempts and members
    duplicated: int  # placements (or ends) beyond one per attempt and member
    at: float = 0.0  # when it went wrong: the submission (lost), the end that never came
    # (unfinished: last start or placement plus the job's run time), the second placement

    @property
    def violation(self) -> str | None:
        if self.outcome == "lost":
            return "job lost (no event at all)"
        if self.outcome == "unfinished":
            return "job placed but never finished"
        if self.duplicated:
            return "job placed (or ended) twice for one attempt"
        return None


def _own(events: Iterable[JobEvent]) -> list[JobEvent]:
    """The job's own events: a rejection of a second submit with its id speaks of that
    request, not of the job."""
    return sorted((e for e in events if not (e.state == JobState.REJECTED and e.reason
                                             and e.reason.startswith(DUPLICATE_JOB_ID))),
                  key=lambda e: e.ts)


def job_outcome(job_id: str, submitted_at: float, events: list[JobEvent],
                placements: list[Placement]) -> JobOutcome:
    evs = _own(events)
    per_slot = Counter((p.attempt, p.member) for p in placements)
    ends = Counter((e.attempt, e.member) for e in evs
                   if e.state in TERMINAL_STATES and e.state != JobState.REJECTED
                   and e.source != "scheduler")
    duplicated = sum(c - 1 for c in per_slot.values() if c > 1)
    duplicated += sum(c - 1 for c in ends.values() if c > 1)
    states = [e.state for e in evs]
    at = submitted_at
    if duplicated:
        at = sorted(p.ts for p in placements)[1] if len(placements) > 1 else evs[-1].ts
    if not states:
        outcome = "lost"
    elif JobState.REJECTED in states:
        outcome = "rejected"
    elif states[-1] in FINISHED:
        outcome = "finished"
    elif states[-1] == JobState.LOST:
        outcome = "given-up"
    elif states[-1] in (JobState.QUEUED, JobState.SUBMITTED):
        outcome = "queued"
    else:
        outcome = "unfinished"
        began = [e.ts for e in evs if e.state in (JobState.PLACED, JobState.STARTED)]
        runs = [p.job.sim_duration_s or 0.0 for p in placements]
        at = max(began or [submitted_at]) + max(runs or [0.0])
    return JobOutcome(job_id, submitted_at, outcome, len(placements), duplicated,
                      at if outcome == "unfinished" or duplicated else submitted_at)


def check_jobs(submitted: dict[str, float], events: list[JobEvent],
               placements: list[Placement]) -> list[JobOutcome]:
    """One outcome per acknowledged submission (job id -> when it was sent)."""
    by_job: dict[str, list[JobEvent]] = defaultdict(list)
    for e in events:
        by_job[e.job_id].append(e)
    placed: dict[str, list[Placement]] = defaultdict(list)
    for p in placements:
        placed[p.job.job_id].append(p)
    return [job_outcome(j, t, by_job.get(j, []), placed.get(j, []))
            for j, t in sorted(submitted.items(), key=lambda kv: kv[1])]


# -- GPUs: allocations, over-commit, dead nodes ---------------------------------------------------


@dataclass(frozen=True)
class Alloc:
    job_id: str
    member: int
    attempt: int
    node: str
    gpus: tuple[int, ...]
    milli: int
    start: float
    end: float | None  # when an event freed it; None: still held at the end of the run


def allocations(placements: list[Placement], events: list[JobEvent]) -> list[Alloc]:
    """Each placement held from its time to the first event that ends its job's attempt
    (and member, where the event names one)."""
    ends: dict[str, list[JobEvent]] = defaultdict(list)
    for e in _own(events):
        if e.state in TERMINAL_STATES:
            ends[e.job_id].append(e)
    out: list[Alloc] = []
    for p in sorted(placements, key=lambda p: p.ts):
        end = next((e.ts for e in ends.get(p.job.job_id, [])
                    if e.attempt == p.attempt and (e.member is None or e.member == p.member)
                    and e.ts >= p.ts), None)
        out.append(Alloc(p.job.job_id, p.member, p.attempt, p.node, tuple(p.gpus),
                         p.gpu_milli, p.ts, end))
    return out


@dataclass(frozen=True)
class OverCommit:
    at: float
    node: str
    gpu: int
    milli: int
    jobs: tuple[str, ...]


def over_commits(allocs: list[Alloc]) -> list[OverCommit]:
    """Every moment a GPU's allocations summed past one GPU (frees before takes at one time)."""
    moments: list[tuple[float, int, Alloc]] = []
    for a in allocs:
        moments.append((a.start, 1, a))
        if a.end is not None:
            moments.append((a.end, 0, a))
    moments.sort(key=lambda m: (m[0], m[1]))
    held: dict[tuple[str, int], dict[tuple[str, int, int], int]] = defaultdict(dict)
    out: list[OverCommit] = []
    for at, take, a in moments:
        for g in a.gpus:
            slot = held[(a.node, g)]
            key = (a.job_id, a.member, a.attempt)
            if take:
                slot[key] = a.milli
                total = sum(slot.values())
                if total > FULL:
                    out.append(OverCommit(at, a.node, g, total, tuple(sorted(k[0] for k in slot))))
            else:
                slot.pop(key, None)
    return out


@dataclass(frozen=True)
class DeadHold:
    job_id: str
    node: str
    held_s: float  # from the node's death until its GPUs were freed (or the run's end)


def dead_node_holds(allocs: list[Alloc], died_at: float, nodes: frozenset[str], limit_s: float,
                    run_end: float) -> list[DeadHold]:
    """Allocations on nodes that died at ``died_at`` still held ``limit_s`` later."""
    out = []
    for a in allocs:
        if a.node not in nodes or a.start > died_at or (a.end is not None and a.end <= died_at):
            continue
        held = (a.end if a.end is not None else run_end) - died_at
        if held > limit_s:
            out.append(DeadHold(a.job_id, a.node, held))
    return out


# -- windows ------------------------------------------------------------------------------------


@dataclass
class Window:
    """One fault and the load around it: from its injection to the next fault's."""

    fault: str
    start: float
    healed: float = 0.0
    end: float = 0.0
    recovery_s: float | None = None  # None: not every service was ready in time
    idle: list[str] = field(default_factory=list)  # live services that showed no progress
    notes: list[str] = field(default_factory=list)
    died: tuple[float, frozenset[str]] | None = None  # nodes that died, and when
    crashes: list[str] = field(default_factory=list)  # exits the fault did not cause itself

    def holds(self, t: float) -> bool:
        return self.start <= t < self.end
