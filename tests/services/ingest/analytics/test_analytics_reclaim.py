from __future__ import annotations

from typing import Any

import pytest
from analytics_builders import T0, analytics, event, placement, window

from gpufleet.contracts import (
    Alert,
    JobState,
    Message,
    ReclaimRequest,
    ReclaimWarning,
    ReclaimWithdrawn,
)

# policy "test": idle_timeout 3 min, min_util 5 %, grace 2 min (analytics_builders.POLICIES)


def kinds(msgs: list[Message]) -> list[str]:
    names = {ReclaimWarning: "warn", ReclaimWithdrawn: "withdraw", ReclaimRequest: "reclaim"}
    return [names[type(m)] for m in msgs if type(m) in names]


def drive(utils: list[float], **spec: Any) -> list[tuple[int, str]]:
    a = analytics()
    a.on_placement(placement(**spec))
    out = []
    for minute, util in enumerate(utils):
        out += [(minute, k) for k in kinds(a.on_window(window(minute, util)))]
    return out


@pytest.mark.parametrize(
    ("name", "utils", "expected"),
    [
        ("busy job is never warned", [90] * 10, []),
        ("idle: warned after the timeout, reclaimed after the grace", [1] * 6,
         [(2, "warn"), (4, "reclaim")]),
        ("reclaimed once only", [1] * 12, [(2, "warn"), (4, "reclaim")]),
        ("a busy minute restarts the count", [1, 1, 50, 1, 1], []),
        ("busy within the grace withdraws, idle again warns again",
         [1, 1, 1, 80, 1, 1, 1, 1, 1], [(2, "warn"), (3, "withdraw"), (6, "warn"),
                                        (8, "reclaim")]),
        ("at the threshold is busy", [5] * 8, []),
    ],
)
def test_reclaim_state_machine(name: str, utils: list[float],
                               expected: list[tuple[int, str]]) -> None:
    assert drive(utils) == expected


@pytest.mark.parametrize(
    ("name", "spec", "action", "policy"),
    [
        ("restartable by the queue's default policy", {}, "requeue", "test"),
        ("the job says it is not restartable", {"restartable": False}, "stop", "test"),
        ("tenant policy does not requeue", {"tenant": "keep"}, "stop", "keep"),
        ("tenant policy, but the job is restartable", {"tenant": "keep", "restartable": True},
         "requeue", "keep"),
    ],
)
def test_reclaim_action_follows_job_and_policy(name: str, spec: dict[str, Any], action: str,
                                               policy: str) -> None:
    a = analytics()
    a.on_placement(placement(gpus=[0, 1], **spec))
    out: list[Message] = []
    for minute in range(6):
        for gpu in (0, 1):
            out += a.on_window(window(minute, 0.5, gpu=gpu, tenant=spec.get("tenant", "t1")))
    reqs = [m for m in out if isinstance(m, ReclaimRequest)]
    assert len(reqs) == 1
    r = reqs[0]
    assert (r.action, r.policy, r.job_id) == (action, policy, "j1")
    assert [(g.node, g.gpu) for g in r.gpus] == [("n1", 0), ("n1", 1)]
    assert r.reason.startswith(f"reclaimed: idle below 5 % for 5 min under policy {policy}")
    assert r.ts == T0 + 300


def test_queue_with_policy_off_is_never_reclaimed() -> None:
    assert drive([0] * 10, queue="prod") == []


def test_one_busy_gpu_keeps_the_whole_job() -> None:
    a = analytics()
    a.on_placement(placement(gpus=[0, 1]))
    out: list[Message] = []
    for minute in range(10):
        out += a.on_window(window(minute, 0.0, gpu=0))
        out += a.on_window(window(minute, 70.0, gpu=1))
    assert kinds(out) == []


def test_warning_names_the_deadline_and_raises_an_alert() -> None:
    a = analytics()
    a.on_placement(placement())
    out: list[Message] = []
    for minute in range(3):
        out += a.on_window(window(minute, 2.0))
    warn = next(m for m in out if isinstance(m, ReclaimWarning))
    alert = next(m for m in out if isinstance(m, Alert) and m.kind == "idle_reclaim")
    assert (warn.idle_since, warn.reclaim_at, warn.util_mean) == (T0, T0 + 300, 2.0)
    assert alert.state == "firing" and alert.job_id == "j1"


def test_replayed_windows_change_nothing_and_ids_are_stable() -> None:
    a, b = analytics(), analytics()
    for x in (a, b):
        x.on_placement(placement())
    first = [m for minute in range(6) for m in a.on_window(window(minute, 1.0))]
    replay = [m for minute in range(6) for m in a.on_window(window(minute, 1.0))]
    again = [m for minute in range(6) for m in b.on_window(window(minute, 1.0))]
    assert replay == [] or kinds(replay) == []
    assert [m.event_id for m in first if kinds([m])] == [m.event_id for m in again if kinds([m])]


def test_job_that_ends_within_the_grace_is_withdrawn() -> None:
    a = analytics()
    a.on_placement(placement())
    for minute in range(3):
        a.on_window(window(minute, 0.0))
    out = a.on_job_event(event("j1", JobState.SUCCEEDED, 3.5))
    assert kinds(out) == ["withdraw"]


def test_requeued_job_starts_a_fresh_count() -> None:
    a = analytics()
    a.on_placement(placement())
    for minute in range(5):
        a.on_window(window(minute, 0.0))
    a.on_job_event(event("j1", JobState.PREEMPTED, 5))
    a.on_placement(placement(attempt=1))
    out = [(m, k) for m in range(6, 12) for k in kinds(a.on_window(window(m, 0.0)))]
    assert out == [(8, "warn"), (10, "reclaim")]
