"""Which job ran on which GPU when: intervals built from placements and job events.

A GPU-window is tagged with the job whose run overlaps it the most, so a job that starts at
:20 and ends at :40 of a minute owns that minute, and when one job ends at :10 and the next
starts at :15 the minute goes to the second.

A run that no placement vouches for (a job started by some other system, or a lone
``started`` of an unknown job) lasts only while its events keep coming: it ends a lease after
the last one, instead of owning its GPUs forever.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gpufleet.contracts import TERMINAL_STATES, JobEvent, JobState, Placement

RunKey = tuple[str, int, int]  # job_id, attempt, member


@dataclass(slots=True)
class Run:
    job_id: str
    tenant: str | None
    node: str
    gpus: tuple[int, ...]
    start: float
    end: float | None = None
    seen: float = 0.0  # its last event
    lease_s: float | None = None  # unplaced: it ends this long after its last event

    @property
    def until(self) -> float | None:
        """When the run ended (or is taken to have ended); None: it runs."""
        if self.end is not None:
            return self.end
        return None if self.lease_s is None else self.seen + self.lease_s

    def overlap(self, lo: float, hi: float) -> float:
        until = self.until
        end = hi if until is None else min(until, hi)
        return max(0.0, end - max(self.start, lo))


@dataclass(frozen=True, slots=True)
class Owner:
    job_id: str
    tenant: str | None


@dataclass
class JobIndex:
    retention_s: float = 86_400.0
    lease_s: float = 60.0  # an unplaced run without events this long has ended
    runs: dict[RunKey, Run] = field(default_factory=dict)
    by_node: dict[str, list[Run]] = field(default_factory=dict)
    placed: dict[tuple[str, int], Placement] = field(default_factory=dict)  # job, member
    ended: dict[RunKey, float] = field(default_factory=dict)  # ends seen before starts
    tenants: dict[str, str] = field(default_factory=dict)
    newest: float = 0.0

    def on_placement(self, p: Placement) -> None:
        self.placed[(p.job.job_id, p.member)] = p
        self.tenants[p.job.job_id] = p.job.tenant
        for run in self.by_node.get(p.node, ()):
            if run.job_id == p.job.job_id:
                run.lease_s = None  # placed after all: the scheduler's to end

    def on_event(self, ev: JobEvent) -> None:
        self.newest = max(self.newest, ev.ts)
        if ev.tenant:
            self.tenants[ev.job_id] = ev.tenant
        key = (ev.job_id, ev.attempt, ev.member or 0)
        if ev.state in (JobState.STARTED, JobState.HEARTBEAT):
            self._start(key, ev)
        elif ev.state in TERMINAL_STATES:
            run = self.runs.get(key)
            if run is None:
                self.ended[key] = ev.ts
            elif run.end is None:
                run.end = ev.ts
            self._prune()

    def _start(self, key: RunKey, ev: JobEvent) -> None:
        known = self.runs.get(key)
        if known is not None:
            known.seen = max(known.seen, ev.ts)
            return
        node, gpus = ev.node, ev.gpus
        placed = self.placed.get((ev.job_id, ev.member or 0))
        if (node is None or gpus is None) and placed is not None:
            node, gpus = placed.node, placed.gpus
        if node is None or not gpus:
            return
        run = Run(job_id=ev.job_id, tenant=None, node=node, gpus=tuple(gpus), start=ev.ts,
                  end=self.ended.pop(key, None), seen=ev.ts,
                  lease_s=None if placed is not None else self.lease_s)
        self.runs[key] = run
        self.by_node.setdefault(node, []).append(run)

    def owner(self, node: str, gpu: int, lo: float, hi: float) -> Owner | None:
        """The job that ran longest on ``node``/``gpu`` within ``[lo, hi)``, if any."""
        best: Run | None = None
        best_overlap = 0.0
        for run in self.by_node.get(node, ()):
            if run.node != node or gpu not in run.gpus:
                continue
            o = run.overlap(lo, hi)
            if o > best_overlap or (o == best_overlap and o > 0 and best is not None
                                    and run.job_id < best.job_id):
                best, best_overlap = run, o
        if best is None:
            return None
        return Owner(best.job_id, self.tenants.get(best.job_id, best.tenant))

    def _prune(self) -> None:
        horizon = self.newest - self.retention_s
        old = [k for k, r in self.runs.items() if (u := r.until) is not None and u < horizon]
        for key in old:
            run = self.runs.pop(key)
            self.by_node[run.node].remove(run)
        for key in [k for k, ts in self.ended.items() if ts < horizon]:
            del self.ended[key]  # an end whose start never came
