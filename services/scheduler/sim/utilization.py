"""Utilization profiles: what each simulated job does with the GPUs it holds, minute by minute.

A job's profile is one of four kinds, drawn per job (seeded by the job's name, so the same job
gets the same profile in every run and in any order):

* ``busy``     at its busy level all its life (a training job in steady state);
* ``idle``     under 3 % all its life (a forgotten notebook, a job stuck on its input);
* ``bursty``   busy bursts between idle gaps (inference, interactive work, a pipeline waiting
  on data); gaps are log-normal, median 10 min, so a few last longer than an idle timeout;
* ``ramping``  idle while it starts (1-20 min: pulling images, loading data), then rising
  linearly (5-30 min) to its busy level, then busy.

The mix (``MIX``) sits between two published figures: Microsoft's Philly trace (Jeon et al.,
ATC'19), DNN training jobs with a mean GPU utilization of about 52 %; and Alibaba PAI's
(Weng et al., "MLaaS in the Wild", NSDI'22), where low GPU utilization is the first challenge
named and, in the released sensor table, the median instance averages 1.5 % over its life,
34.5 % average 0 %, 75 % under 10 % and 5 % at or over 50 % (AntMan, OSDI'20, from the same
company, raised SM utilization 34 % by running jobs in the share that others held idle). Our
mix: 35 % busy, 25 % idle, 25 % bursty, 15 % ramping; busy levels 40-100 %. Its mean
utilization over job time is about 45 % (see ``test_sim_utilization.py``): near Philly's, with
PAI's many idle jobs.

A profile is a list of phases on the job's own clock (minutes from its start, the clock a
requeued job resumes on); each phase holds a level, or rises linearly from one to another.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

KINDS = ("busy", "idle", "bursty", "ramping")
MIX = {"busy": 0.35, "idle": 0.25, "bursty": 0.25, "ramping": 0.15}
IDLE_MAX = 3.0  # percent: an idle minute's level is drawn under this
BUSY_LEVEL = (40.0, 100.0)  # a job's busy level, drawn uniformly
BURST_MIN = 20.0  # minutes: mean of a busy burst (exponential)
GAP_MEDIAN_MIN, GAP_SIGMA = 10.0, 1.2  # idle gaps: log-normal
RAMP_IDLE_MIN = (1.0, 20.0)  # minutes idle at the start of a ramping job
RAMP_RISE_MIN = (5.0, 30.0)  # minutes rising to the busy level
RESTARTABLE = 0.7  # share of jobs that may be stopped and requeued (see docs/scheduler.md)


@dataclass(frozen=True, slots=True)
class Phase:
    start: int  # minute on the job's clock
    end: int  # exclusive
    level: float  # percent at the first minute
    to: float  # percent at the last minute (== level: a flat phase)

    def at(self, minute: int) -> float:
        if self.end - self.start <= 1 or self.to == self.level:
            return self.level
        return self.level + (self.to - self.level) * (minute - self.start) / (
            self.end - self.start - 1)


@dataclass(frozen=True)
class Profile:
    kind: str
    phases: tuple[Phase, ...]
    restartable: bool

    @property
    def minutes(self) -> int:
        return self.phases[-1].end if self.phases else 0

    def minutes_of(self, start: int, end: int) -> Iterator[tuple[int, float]]:
        """(minute, level) for every minute in [start, end)."""
        for p in self.phases:
            if p.end <= start or p.start >= end:
                continue
            for m in range(max(p.start, start), min(p.end, end)):
                yield m, p.at(m)

    def busy_minutes(self, start: int, end: int, min_util: float) -> int:
        """Minutes in [start, end) at or over ``min_util``."""
        n = 0
        for p in self.phases:
            lo, hi = max(p.start, start), min(p.end, end)
            if lo >= hi:
                continue
            if p.to == p.level:
                n += (hi - lo) if p.level >= min_util else 0
            else:
                n += sum(1 for m in range(lo, hi) if p.at(m) >= min_util)
        return n

    def next_busy(self, minute: int, min_util: float) -> int:
        """The first minute at or after ``minute`` at or over ``min_util`` (the end if none)."""
        for p in self.phases:
            if p.end <= minute:
                continue
            for m in range(max(p.start, minute), p.end):
                if p.at(m) >= min_util:
                    return m
                if p.to == p.level:
                    break  # a flat idle phase: none of it is busy
        return self.minutes

    def longest_idle_run(self, start: int, end: int, min_util: float) -> int:
        """The longest run of minutes under ``min_util`` within [start, end)."""
        best = run = 0
        for p in self.phases:
            lo, hi = max(p.start, start), min(p.end, end)
            if lo >= hi:
                continue
            if p.to == p.level:
                run = run + (hi - lo) if p.level < min_util else 0
                best = max(best, run)
                continue
            for m in range(lo, hi):
                run = run + 1 if p.at(m) < min_util else 0
                best = max(best, run)
        return best


def job_rng(seed: int, name: str) -> np.random.Generator:
    digest = hashlib.blake2b(f"{seed}:{name}".encode(), digest_size=8).digest()
    return np.random.default_rng(int.from_bytes(digest, "little"))


def draw(name: str, runtime_s: float, seed: int = 0, mix: dict[str, float] | None = None,
         restartable: float = RESTARTABLE) -> Profile:
    """The profile of job ``name`` that runs ``runtime_s`` when nothing stops it."""
    rng = job_rng(seed, name)
    weights = mix or MIX
    kinds = list(weights)
    p = np.array([weights[k] for k in kinds], float)
    kind = kinds[int(rng.choice(len(kinds), p=p / p.sum()))]
    can_restart = bool(rng.random() < restartable)
    total = max(1, math.ceil(runtime_s / 60))
    busy = float(rng.uniform(*BUSY_LEVEL))
    idle = float(rng.uniform(0.0, IDLE_MAX))
    return Profile(kind, tuple(_phases(kind, total, busy, idle, rng)), can_restart)


def _phases(kind: str, total: int, busy: float, idle: float,
            rng: np.random.Generator) -> Iterator[Phase]:
    if kind == "busy":
        yield Phase(0, total, busy, busy)
    elif kind == "idle":
        yield Phase(0, total, idle, idle)
    elif kind == "ramping":
        quiet = min(total, round(rng.uniform(*RAMP_IDLE_MIN)))
        rise = min(total - quiet, round(rng.uniform(*RAMP_RISE_MIN)))
        if quiet:
            yield Phase(0, quiet, idle, idle)
        if rise:
            yield Phase(quiet, quiet + rise, idle, busy)
        if quiet + rise < total:
            yield Phase(quiet + rise, total, busy, busy)
    elif kind == "bursty":
        at, on = 0, bool(rng.random() < 0.5)
        while at < total:
            length = (rng.exponential(BURST_MIN) if on
                      else rng.lognormal(math.log(GAP_MEDIAN_MIN), GAP_SIGMA))
            end = min(total, at + max(1, round(length)))
            level = busy if on else idle
            yield Phase(at, end, level, level)
            at, on = end, not on
    else:
        raise ValueError(f"unknown profile kind {kind!r}; known: {', '.join(KINDS)}")
