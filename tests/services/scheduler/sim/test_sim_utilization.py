"""Utilization profiles: deterministic per job, in the documented mix, and read correctly."""

from __future__ import annotations

from collections import Counter

import pytest

from services.scheduler.sim.utilization import (
    BUSY_LEVEL,
    IDLE_MAX,
    KINDS,
    MIX,
    RESTARTABLE,
    Phase,
    Profile,
    draw,
)

FLAT = Profile("bursty", (Phase(0, 10, 80, 80), Phase(10, 55, 1, 1), Phase(55, 60, 90, 90)), True)
RAMP = Profile("ramping", (Phase(0, 5, 1, 1), Phase(5, 15, 1, 91), Phase(15, 30, 91, 91)), True)


def test_the_same_job_and_seed_give_the_same_profile() -> None:
    assert draw("job-a", 7200, seed=3) == draw("job-a", 7200, seed=3)
    others = {draw(f"job-{i}", 7200, seed=4).phases for i in range(20)}
    assert len(others) == 20


@pytest.mark.parametrize("runtime_s", [1.0, 59.0, 61.0, 3600.0, 86400.0 * 3])
@pytest.mark.parametrize("name", [f"t{i}" for i in range(12)])
def test_phases_cover_the_runtime_and_keep_to_their_kind(name: str, runtime_s: float) -> None:
    p = draw(name, runtime_s)
    assert p.kind in KINDS
    assert p.phases[0].start == 0 and p.minutes == max(1, -(-int(runtime_s) // 60))
    assert all(a.end == b.start and a.end > a.start for a, b in zip(p.phases, p.phases[1:],
                                                                      strict=False))
    levels = [lvl for _, lvl in p.minutes_of(0, p.minutes)]
    if p.kind == "idle":
        assert max(levels) < IDLE_MAX
    if p.kind == "busy":
        assert min(levels) >= BUSY_LEVEL[0]


def test_the_mix_and_the_restartable_share_are_as_documented() -> None:
    profiles = [draw(f"j{i}", 3 * 3600) for i in range(4000)]
    kinds = Counter(p.kind for p in profiles)
    for kind, share in MIX.items():
        assert kinds[kind] / 4000 == pytest.approx(share, abs=0.03)
    assert sum(p.restartable for p in profiles) / 4000 == pytest.approx(RESTARTABLE, abs=0.03)
    # The documented mean utilization over job time (docs/scheduler.md): about 45 %.
    total = sum(lvl for p in profiles for _, lvl in p.minutes_of(0, p.minutes))
    minutes = sum(p.minutes for p in profiles)
    assert 40 <= total / minutes <= 50


@pytest.mark.parametrize(("profile", "start", "end", "busy", "next_busy_from_11", "idle_run"), [
    (FLAT, 0, 60, 15, 55, 45),
    (FLAT, 12, 58, 3, 55, 43),
    (RAMP, 0, 30, 25 - 1, 11, 6),  # the rise passes 5 % at its second minute
])
def test_busy_minutes_next_busy_and_the_longest_idle_run(
        profile: Profile, start: int, end: int, busy: int, next_busy_from_11: int,
        idle_run: int) -> None:
    assert profile.busy_minutes(start, end, 5.0) == busy
    assert profile.next_busy(11, 5.0) == next_busy_from_11
    assert profile.longest_idle_run(start, end, 5.0) == idle_run
