"""The closed loop's tables and analyst views (migration 0005), on the real warehouse: rows as
the analytics app's messages carry them, and what the views answer (replays counted once)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

pytestmark = pytest.mark.integration

T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
RECLAIM_COLS = ["event_id", "ts", "kind", "job_id", "tenant", "queue", "policy", "nodes", "gpus",
                "action", "idle_since", "reclaim_at", "util_mean", "threshold", "reason"]
DRAIN_COLS = ["event_id", "ts", "kind", "cluster", "node", "gpu", "uuid", "cause", "reason",
              "jobs", "since", "healthy_since"]


def minutes(m: float) -> datetime:
    return T0 + timedelta(minutes=m)


def test_v_reclaims_one_row_per_idle_streak(writer: Any) -> None:
    job = f"j-{uuid.uuid4().hex[:8]}"
    rows = [
        # warned at 30, reclaimed at 40 (sent twice: a replay), on 2 GPUs
        ["w1", minutes(30), "warn", job, "t1", "q", "p", ["n1", "n1"], [0, 1], None, minutes(0),
         minutes(40), 1.0, 5.0, "idle"],
        ["r1", minutes(40), "reclaim", job, "t1", "q", "p", ["n1", "n1"], [0, 1], "requeue",
         minutes(0), None, 1.0, 5.0, "reclaimed: idle below 5 % for 40 min under policy p"],
        ["r1", minutes(40), "reclaim", job, "t1", "q", "p", ["n1", "n1"], [0, 1], "requeue",
         minutes(0), None, 1.0, 5.0, "reclaimed: idle below 5 % for 40 min under policy p"],
        # a later streak, warned then withdrawn
        ["w2", minutes(130), "warn", job, "t1", "q", "p", ["n2"], [3], None, minutes(100),
         minutes(140), 2.0, 5.0, "idle"],
        ["x2", minutes(135), "withdraw", job, None, None, "p", [], [], None, minutes(100), None,
         None, None, "busy again"],
    ]
    writer.insert("reclaims", rows, column_names=RECLAIM_COLS)
    got = writer.query(
        "SELECT reclaimed, action, gpu_count, idle_gpu_hours_before_reclaim, "
        "toUnixTimestamp(withdrawn_at) "
        "FROM v_reclaims WHERE job_id = {j:String} ORDER BY idle_since",
        parameters={"j": job}).result_rows
    assert len(got) == 2
    assert got[0][:4] == (True, "requeue", 2, pytest.approx(2 * 40 / 60))
    assert got[0][4] is None
    assert got[1][:4] == (False, None, 1, 0)
    assert got[1][4] == int(minutes(135).timestamp())


def test_v_gpu_drains_pairs_drain_and_return(writer: Any) -> None:
    node = f"n-{uuid.uuid4().hex[:8]}"
    writer.insert("gpu_drains", [
        ["d1", minutes(0), "drain", "c", node, 2, "GPU-2", "xid", "XID 79", ["j2"], minutes(0),
         None],
        ["u1", minutes(90), "undrain", "c", node, 2, "GPU-2", None, "healthy 15 min", [],
         minutes(0), minutes(75)],
        ["d2", minutes(10), "drain", "c", node, 3, "GPU-3", "lost", "GPU is lost", [],
         minutes(10), None],
    ], column_names=DRAIN_COLS)
    got = writer.query(
        "SELECT gpu, cause, jobs_moved, drained_now, round(drained_hours, 2) FROM v_gpu_drains "
        "WHERE node = {n:String} ORDER BY gpu", parameters={"n": node}).result_rows
    assert got[0] == (2, "xid", ["j2"], False, 1.5)
    assert got[1][:4] == (3, "lost", [], True)


def test_v_job_rightsizing_keeps_the_latest_report(writer: Any) -> None:
    job = f"j-{uuid.uuid4().hex[:8]}"
    cols = ["event_id", "ts", "job_id", "tenant", "final", "gpus_requested", "gpus_seen",
            "gpus_busy", "windows", "gpu_minutes", "busy_gpu_minutes", "util_mean", "util_p95",
            "util_max", "mem_peak_bytes", "recommended_gpus", "recommendation"]
    writer.insert("job_rightsizing", [
        ["a", minutes(10), job, "t1", False, 8, 8, 3, 80, 80.0, 30.0, 20.0, 40.0, 90.0, 1 << 30,
         3, "asked 8 GPUs, 3 were busy, p95 40 %: ask for 3 GPUs"],
        ["b", minutes(60), job, "t1", True, 8, 8, 2, 480, 480.0, 120.0, 12.0, 31.0, 95.0, 2 << 30,
         2, "asked 8 GPUs, 2 were busy, p95 31 %: ask for 2 GPUs"],
    ], column_names=cols)
    got = writer.query(
        "SELECT final, gpus_to_give_back, gpu_hours, idle_gpu_hours, recommendation "
        "FROM v_job_rightsizing WHERE job_id = {j:String}", parameters={"j": job}).result_rows
    assert got == [(True, 6, 8.0, 6.0, "asked 8 GPUs, 2 were busy, p95 31 %: ask for 2 GPUs")]


def test_the_example_queries_of_the_docs_run(writer: Any) -> None:
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[3] / "docs" / "analytics.md").read_text()
    sql = doc.split("```sql", 1)[1].split("```", 1)[0]
    statements = [s.strip() for s in sql.split(";") if s.strip()]
    assert len(statements) == 4
    for statement in statements:
        writer.query(statement)
