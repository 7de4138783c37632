"""Integration, on the real warehouse: the decisions the core makes, as rows through the
writer's sink, answer the analyst views of migration 0005 as the scenario says."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from analytics_builders import T0, analytics, event, inventory, placement, window

from gpufleet.contracts import GpuHealth, JobState, Message
from services.ingest.looprows import LOOP_TABLES, loop_row
from services.ingest.rows import to_columns
from services.ingest.sink import ClickHouseSink

pytestmark = pytest.mark.integration


def scenario(node: str, j1: str, j2: str) -> list[Message]:
    """j1 idles and is reclaimed; j2 (2 GPUs, one busy) ends; GPU 1 drains and returns."""
    a = analytics()
    msgs: list[Message] = []
    steps: list[Any] = [inventory(0, node=node), placement(j1, gpus=[0], node=node),
                        placement(j2, gpus=[1, 2], node=node)]
    for m in range(8):
        steps += [window(m, 1.0, j1, node=node, gpu=0),
                  window(m, 80.0, j2, node=node, gpu=1, p95=90.0),
                  window(m, 0.0, j2, node=node, gpu=2)]
    steps += [event(j2, JobState.SUCCEEDED, 8),
              inventory(9, {1: (GpuHealth.DEGRADED, "XID 79")}, node=node)]
    steps += [window(m, 0.0, None, node=node, gpu=0) for m in range(8, 12)]
    steps += [inventory(12, node=node), inventory(27, node=node)]
    for s in steps:
        msgs += a.on_message(s)
    return msgs


async def test_loop_rows_answer_the_views(warehouse_url: str, ch: Any) -> None:
    node = f"n-{uuid.uuid4().hex[:8]}"
    j1, j2 = f"{node}-j1", f"{node}-j2"
    rows: dict[str, list[dict[str, Any]]] = {}
    for m in scenario(node, j1, j2):
        found = loop_row(m)
        if found is not None:
            rows.setdefault(found[0], []).append(found[1])
    assert set(rows) == set(LOOP_TABLES.values())
    sink = ClickHouseSink(warehouse_url)
    await sink.start(tables=LOOP_TABLES.values())
    try:
        for table, batch in rows.items():
            assert await sink.insert(table, to_columns(batch), f"{node}-{table}") == len(batch)
            await sink.insert(table, to_columns(batch), f"{node}-{table}")  # a retry: stored once
    finally:
        await sink.close()

    reclaim = ch.query("SELECT reclaimed, action, gpu_count, toUnixTimestamp(idle_since) "
                       "FROM v_reclaims WHERE job_id = {j:String}", parameters={"j": j1}
                       ).result_rows
    assert reclaim == [(True, "requeue", 1, int(T0))]
    stored = ch.query("SELECT count() FROM reclaims WHERE job_id = {j:String}",
                      parameters={"j": j1}).result_rows[0][0]
    assert stored == sum(1 for r in rows["reclaims"] if r["job_id"] == j1) == 2  # warn, reclaim
    drains = ch.query("SELECT gpu, cause, jobs_moved, drained_now FROM v_gpu_drains "
                      "WHERE node = {n:String}", parameters={"n": node}).result_rows
    assert drains == [(1, "xid", [], False)]  # j2 had ended; returned 15 min after minute 12
    sizing = ch.query("SELECT final, gpus_requested, gpus_busy, recommended_gpus, recommendation "
                      "FROM v_job_rightsizing WHERE job_id = {j:String}", parameters={"j": j2}
                      ).result_rows
    assert sizing == [(True, 2, 1, 1, "asked 2 GPUs, 1 was busy, p95 90 %: ask for 1 GPU")]
