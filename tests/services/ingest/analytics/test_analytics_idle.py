"""The idle-GPU detector, as the ingest writer used it before it moved to analytics: the same
table, now against ``services.ingest.analytics.idle`` (and through the analytics core)."""

from __future__ import annotations

import pytest
from analytics_builders import analytics, window

from gpufleet.contracts import Alert, AlertState
from services.ingest.analytics.idle import IdleTracker, alert_id

KEY = ("c", "n1", 0)
Step = tuple[float, str | None]  # util_mean, job
F, R = AlertState.FIRING, AlertState.RESOLVED

CASES = [
    ("busy never fires", [(90, "a")] * 5, []),
    ("idle but not allocated", [(0, None)] * 5, []),
    ("fires after 3 idle minutes", [(1, "a")] * 4, [(2, F, "a")]),
    ("busy again clears", [(1, "a")] * 3 + [(80, "a")], [(2, F, "a"), (3, R, "a")]),
    ("job ends clears", [(1, "a")] * 3 + [(0, None)], [(2, F, "a"), (3, R, "a")]),
    ("a busy minute restarts the count", [(1, "a"), (1, "a"), (50, "a"), (1, "a"), (1, "a")], []),
    ("new job on the gpu", [(1, "a")] * 3 + [(1, "b")] * 3,
     [(2, F, "a"), (3, R, "a"), (5, F, "b")]),
]


@pytest.mark.parametrize(("name", "steps", "expected"), CASES)
def test_idle_state_machine(name: str, steps: list[Step],
                            expected: list[tuple[int, AlertState, str | None]]) -> None:
    tracker = IdleTracker(threshold=5.0, idle_after_s=180)
    out = []
    for i, (util, job) in enumerate(steps):
        for a in tracker.observe(KEY, 60.0 * i, 60, util, job, "t1" if job else None):
            out.append((i, a.state, a.job_id))
    assert out == expected


@pytest.mark.parametrize(("name", "steps", "expected"), CASES)
def test_the_analytics_core_makes_the_same_idle_alerts(
        name: str, steps: list[Step], expected: list[tuple[int, AlertState, str | None]]) -> None:
    a = analytics(policies="")
    out = []
    for i, (util, job) in enumerate(steps):
        for m in a.on_window(window(i, util, job=job)):
            if isinstance(m, Alert) and m.kind == "idle_gpu":
                out.append((i, m.state, m.job_id))
    assert out == expected


def test_firing_and_resolved_pair_up_and_name_the_gpu() -> None:
    tracker = IdleTracker(threshold=5.0, idle_after_s=60)
    fired = tracker.observe(KEY, 0, 60, 0.0, "a", "t1")
    resolved = tracker.observe(KEY, 60, 60, 99.0, "a", "t1")
    assert fired[0].alert_id == resolved[0].alert_id == alert_id(KEY, "a", 0)
    assert (fired[0].node, fired[0].gpu, fired[0].job_id, fired[0].tenant) == ("n1", 0, "a", "t1")
    assert fired[0].event_id != resolved[0].event_id
