"""The closed loop's decisions in the api's live state, and the waste arithmetic, without the
bus or the warehouse: messages and rows in, views out."""

from __future__ import annotations

from typing import Any

import pytest

from gpufleet.contracts import (
    DrainCause,
    GpuDrain,
    GpuRef,
    GpuUndrain,
    Message,
    ReclaimRequest,
    ReclaimWarning,
    ReclaimWithdrawn,
    RightSizingReport,
)
from services.api import core, waste
from services.api.cli import top
from services.api.loopstate import LoopState
from services.api.schemas import HistoryPoint
from services.api.state import LiveState

from .builders import make_node


def drain(gpu: int, ts: float, node: str = "n1") -> GpuDrain:
    return GpuDrain(cluster="test", node=node, gpu=gpu, cause=DrainCause.XID, reason="XID 79",
                    jobs=["j1"], since=ts, ts=ts)


def undrain(gpu: int, ts: float, since: float, node: str = "n1") -> GpuUndrain:
    return GpuUndrain(cluster="test", node=node, gpu=gpu, reason="healthy 15 min",
                      drained_since=since, healthy_since=ts - 900, ts=ts)


def report(job: str, ts: float, *, final: bool = False, minutes: float = 600,
           busy: float = 150, tenant: str = "t1") -> RightSizingReport:
    return RightSizingReport(job_id=job, tenant=tenant, final=final, gpus_requested=8,
                             gpus_seen=8, gpus_busy=2, gpu_minutes=minutes,
                             busy_gpu_minutes=busy, util_p95=31, recommended_gpus=2,
                             recommendation="asked 8 GPUs, 2 were busy, p95 31 %: ask for 2 GPUs",
                             ts=ts)


def warn(job: str, ts: float) -> ReclaimWarning:
    return ReclaimWarning(job_id=job, tenant="t1", policy="p", gpus=[GpuRef(node="n1", gpu=0)],
                          idle_since=ts - 1800, reclaim_at=ts + 600, util_mean=1, threshold=5,
                          reason="idle", ts=ts)


def reclaim(job: str, ts: float) -> ReclaimRequest:
    return ReclaimRequest(job_id=job, tenant="t1", policy="p", gpus=[GpuRef(node="n1", gpu=0)],
                          action="requeue", idle_since=ts - 2400, util_mean=1, threshold=5,
                          reason="reclaimed: idle below 5 % for 40 min under policy p", ts=ts)


# (name, messages, drained (node, gpu) after, stream events)
DRAIN_CASES: list[tuple[str, list[Message], set[tuple[str, int]], list[str]]] = [
    ("drained", [drain(2, 100)], {("n1", 2)}, ["drain"]),
    ("returned", [drain(2, 100), undrain(2, 2000, since=100)], set(), ["drain", "drain"]),
    ("an older drain read late stays out", [drain(2, 200), drain(2, 100)], {("n1", 2)},
     ["drain"]),
    ("a return of an earlier drain leaves the later one", [drain(2, 500),
                                                            undrain(2, 2000, since=100)],
     {("n1", 2)}, ["drain", "drain"]),
    ("GPUs apart", [drain(1, 100), drain(1, 100, node="n2")], {("n1", 1), ("n2", 1)},
     ["drain", "drain"]),
]


@pytest.mark.parametrize(("messages", "drained", "events"),
                         [c[1:] for c in DRAIN_CASES], ids=[c[0] for c in DRAIN_CASES])
def test_drains(messages: list[Message], drained: set[tuple[str, int]],
                events: list[str]) -> None:
    state = LiveState()
    for m in messages:
        state.apply(m)
    assert set(state.loop.drained) == drained
    assert [kind for _, kind, _ in state.changes_since(0)] == events


def test_drained_gpu_is_marked_in_the_node_view_and_top() -> None:
    state = LiveState()
    state.apply(make_node("n1").gpus(4).util(50, 50, 50, 50).inventory())
    state.apply(make_node("n1").gpus(4).util(50, 50, 50, 50).sample())
    state.apply(drain(2, 100))
    gpus = core.node_view(state, "n1").gpus
    assert [(g.drain, g.drain_reason) for g in gpus] == [
        (None, None), (None, None), ("xid", "XID 79"), (None, None)]
    summary = core.cluster_summary(state, "test")
    nodes: list[dict[str, Any]] = [{"node": "n1", "model": "H100", "gpus": [
        {"index": g.index, "state": g.state, "util": g.util, "drain": g.drain,
         "drain_reason": g.drain_reason} for g in gpus]}]
    text = top.render({f: getattr(summary, f) for f in summary.__struct_fields__}, nodes, [],
                      color=False)
    assert " 50D" in text and text.count("D ") >= 1
    assert "DRAINED (1)" in text and "n1/2    xid       XID 79" in text


# (name, reports, expected (final, gpu_hours, idle_gpu_hours) of job j)
RIGHTSIZING_CASES = [
    ("latest", [report("j", 1), report("j", 2, minutes=1200)], (False, 20.0, 17.5)),
    ("older read late", [report("j", 2, minutes=1200), report("j", 1)], (False, 20.0, 17.5)),
    ("final stands", [report("j", 5, final=True), report("j", 9)], (True, 10.0, 7.5)),
]


@pytest.mark.parametrize(("reports", "expected"), [c[1:] for c in RIGHTSIZING_CASES],
                         ids=[c[0] for c in RIGHTSIZING_CASES])
def test_rightsizing_keeps_the_latest(reports: list[RightSizingReport],
                                      expected: tuple[bool, float, float]) -> None:
    loop = LoopState()
    for r in reports:
        loop.apply(r)
    view = loop.rightsizing_of("j")
    assert view is not None
    assert (view.final, view.gpu_hours, view.idle_gpu_hours) == expected


def test_rightsizing_list_filters_orders_and_bounds() -> None:
    loop = LoopState(max_jobs=3)
    for i, busy in enumerate([600, 0, 300, 100]):  # j0 is dropped: over max_jobs
        loop.apply(report(f"j{i}", i, busy=busy, final=i % 2 == 1,
                          tenant="t2" if i == 3 else "t1"))
    views, total = loop.rightsizing_list(None, None, 10)
    assert ([v.job_id for v in views], total) == (["j1", "j3", "j2"], 3)
    assert [v.job_id for v in loop.rightsizing_list("t1", None, 10)[0]] == ["j1", "j2"]
    assert [v.job_id for v in loop.rightsizing_list(None, True, 10)[0]] == ["j1", "j3"]
    assert loop.rightsizing_list(None, None, 1) == (views[:1], 3)


def test_reclaims_per_job_in_order_replays_once() -> None:
    state = LiveState()
    messages: list[Message] = [
        warn("j", 100), warn("j", 100),
        ReclaimWithdrawn(job_id="j", policy="p", idle_since=50, reason="busy", ts=200),
        warn("j", 300), reclaim("j", 400)]
    for m in messages:
        state.apply(m)
    views = state.loop.reclaims_of("j")
    assert [(v.kind, v.ts) for v in views] == [("warn", 100), ("withdraw", 200), ("warn", 300),
                                               ("reclaim", 400)]
    assert views[-1].action == "requeue" and views[-1].gpus == ["n1/0"]
    assert [kind for _, kind, _ in state.changes_since(0)] == ["reclaim"] * 5
    assert state.loop.reclaims_of("other") == []


def test_usage_of_rows() -> None:
    rows = [("n1", 0, 3600, 3600 * 80, 99.0, 40e9, 3.6e9, 3600),
            ("n1", 1, 1800, 1800 * 2, 4.0, 10e9, 0, 0)]
    usage = waste.usage_of(rows)
    assert usage is not None
    assert [(g.gpu, g.gpu_hours, g.util_mean, g.util_max) for g in usage.gpus] == [
        (0, 1.0, 80.0, 99.0), (1, 0.5, 2.0, 4.0)]
    assert (usage.gpu_hours, usage.busy_gpu_hours, usage.util_mean, usage.mem_peak_bytes,
            usage.energy_kwh) == (1.5, 1.0, 54.0, 40_000_000_000, 1.0)
    assert waste.usage_of([]) is None


def test_series_and_totals() -> None:
    points = [HistoryPoint(ts=0, key="t", util_mean=40, util_max=90, gpu_hours=4,
                           idle_allocated_gpu_hours=1, energy_kwh=2, gpus=4),
              HistoryPoint(ts=3600, key="t", util_mean=1, util_max=3, gpu_hours=2,
                           idle_allocated_gpu_hours=2, energy_kwh=0.5, gpus=2)]
    series = waste.series_of(points)
    assert [(p.allocated_gpu_hours, p.busy_gpu_hours) for p in series] == [(4, 3), (2, 0)]
    totals = waste.totals_of(series, (3, 1, 1.5), 6)
    assert (totals.allocated_gpu_hours, totals.busy_gpu_hours, totals.idle_gpu_hours,
            totals.busy_share, totals.energy_kwh) == (6, 3, 3, 0.5, 2.5)
    assert (totals.warned_jobs, totals.reclaimed_jobs, totals.idle_gpu_hours_reclaimed,
            totals.gpus_to_give_back) == (3, 1, 1.5, 6)
    assert waste.totals_of([], (0, 0, None), None).busy_share is None


def test_ttl_cache_keeps_answers_for_a_while_and_a_bounded_number() -> None:
    now = [0.0]
    cache = waste.TtlCache(ttl_s=30, size=2, clock=lambda: now[0])
    cache.put("a", 1)
    cache.put("b", 2)
    now[0] = 29.0
    assert (cache.get("a"), cache.get("b")) == (1, 2)
    cache.put("c", 3)  # a is the oldest: dropped
    assert (cache.get("a"), cache.get("c")) == (None, 3)
    now[0] = 30.0
    assert (cache.get("b"), cache.get("c")) == (None, 3)
