"""History queries on the real warehouse return the right aggregates for known rows."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import clickhouse_connect
import pytest

from services.api.history import HistoryQuery, build

from .builders import make_node
from .conftest import RunningApi

pytestmark = pytest.mark.integration
T0 = (int(time.time()) // 3600 - 6) * 3600  # on the hour, recent (the table has a TTL)
COLUMNS = ["cluster", "node", "gpu", "uuid", "window_start", "window_s", "samples", "util_mean",
           "util_min", "util_max", "util_p95", "mem_used_bytes_mean", "power_mw_mean",
           "energy_mj", "job_id", "tenant"]


def row(node: str, gpu: int, t: int, util: float, samples: int = 60, util_max: float | None = None,
        job: str | None = None, tenant: str | None = None, cluster: str = "test") -> list[Any]:
    return [cluster, node, gpu, f"GPU-{node}-{gpu}", datetime.fromtimestamp(t, UTC), 60, samples,
            util, util, util_max if util_max is not None else util, util, 0.0, 300_000.0,
            3_600_000_000, job, tenant]


ROWS = [
    row("n1", 0, T0, 50, util_max=60, job="j1", tenant="a"),
    row("n1", 0, T0 + 60, 30, samples=30, util_max=90, job="j1", tenant="a"),
    row("n1", 1, T0, 2, job="j2", tenant="b"),  # idle while allocated
    row("n2", 0, T0 + 3600, 80),
    row("n1", 0, T0, 99, cluster="other"),  # another cluster: not counted
    row("n1", 0, T0 - 7200, 99),  # before `from`: not counted
]

# (group_by, [(ts, key, util_mean, util_max, gpus, gpu_hours, idle_allocated_gpu_hours)])
CASES = [
    ("cluster", [(T0, "test", 27.333, 90, 2, 0.05, 60 / 3600),
                 (T0 + 3600, "test", 80, 80, 1, 60 / 3600, 0)]),
    ("tenant", [(T0, "a", 40.0, 90, 1, 120 / 3600, 0), (T0, "b", 2, 2, 1, 60 / 3600, 60 / 3600),
                (T0 + 3600, "", 80, 80, 1, 60 / 3600, 0)]),
    ("job", [(T0, "j1", 40.0, 90, 1, 120 / 3600, 0), (T0, "j2", 2, 2, 1, 60 / 3600, 60 / 3600),
             (T0 + 3600, "", 80, 80, 1, 60 / 3600, 0)]),
    ("gpu", [(T0, "n1/0", 40.0, 90, 1, 120 / 3600, 0),
             (T0, "n1/1", 2, 2, 1, 60 / 3600, 60 / 3600),
             (T0 + 3600, "n2/0", 80, 80, 1, 60 / 3600, 0)]),
    ("node", [(T0, "n1", 27.333, 90, 2, 0.05, 60 / 3600),
              (T0 + 3600, "n2", 80, 80, 1, 60 / 3600, 0)]),
    ("model", [(T0, "H100", 27.333, 90, 2, 0.05, 60 / 3600),
               (T0 + 3600, "A100", 80, 80, 1, 60 / 3600, 0)]),
]


@pytest.fixture(scope="module")
def known_rows(warehouse_url: str) -> None:
    client = clickhouse_connect.get_client(dsn=warehouse_url)
    try:
        client.command("TRUNCATE TABLE gpu_util_1m")
        client.command("TRUNCATE TABLE gpu_util_1h")
        client.insert("gpu_util_1m", ROWS, column_names=COLUMNS)
    finally:
        client.close()


@pytest.mark.parametrize("step", [3600, 1800], ids=["hourly-rollup", "minute-rows"])
@pytest.mark.parametrize(("group_by", "expected"), CASES)
async def test_history_aggregates(shared_api: RunningApi, known_rows: None, group_by: str,
                                  expected: list[tuple[Any, ...]], step: int) -> None:
    api = shared_api
    await api.publish("nodes", make_node("n1").gpus(2).inventory(),
                      make_node("n2").gpus(1).model("A100").inventory())
    await api.wait_for("/api/v1/nodes", lambda b: len(b["nodes"]) == 2)
    response = await api.get("/api/v1/history/utilization", group_by=group_by, step=str(step),
                             **{"from": str(T0), "to": str(T0 + 7200)})
    assert response.status == 200, await response.text()
    points = (await response.json())["points"]
    got = [(p["ts"], p["key"], p["util_mean"], p["util_max"], p["gpus"], p["gpu_hours"],
            p["idle_allocated_gpu_hours"]) for p in points]
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        assert g[:2] == e[:2]
        assert g[2:] == pytest.approx(e[2:], abs=1e-3)
    if group_by == "cluster":  # three rows of 3.6e9 mJ (1 kWh each) in the first hour
        assert points[0]["energy_kwh"] == pytest.approx(3.0)


@pytest.mark.parametrize("step", [3600, 1800], ids=["hourly-rollup", "minute-rows"])
@pytest.mark.parametrize(("filters", "group_by", "expected"), [
    ({"job_id": "j1"}, "job", [(T0, "j1", 40.0)]),
    ({"tenant": "b"}, "gpu", [(T0, "n1/1", 2.0)]),
    ({"node": "n2"}, "node", [(T0 + 3600, "n2", 80.0)]),
    ({"node": "n2", "tenant": "a"}, "node", []),
])
async def test_history_filters(shared_api: RunningApi, known_rows: None, step: int,
                               filters: dict[str, str], group_by: str,
                               expected: list[tuple[Any, ...]]) -> None:
    response = await shared_api.get("/api/v1/history/utilization", group_by=group_by,
                                    step=str(step), **filters,
                                    **{"from": str(T0), "to": str(T0 + 7200)})
    assert response.status == 200, await response.text()
    points = (await response.json())["points"]
    assert [(p["ts"], p["key"], pytest.approx(p["util_mean"], abs=1e-3)) for p in points] \
        == expected


async def test_history_when_the_warehouse_is_down_is_503(bus: Any) -> None:
    from .conftest import start_api

    async with start_api(bus, clickhouse_url="http://default:@127.0.0.1:9/default") as api:
        response = await api.get("/api/v1/history/utilization")
        assert response.status == 503
        assert "warehouse" in (await response.json())["error"]
        ready = await api.client.get("/readyz")
        assert ready.status == 503
        assert (await ready.json())["checks"]["warehouse"] is False


@pytest.mark.parametrize(("start", "end", "step", "idle_pct", "table"), [
    (0, 7200, 3600, 5.0, "gpu_util_1h"),
    (0, 86400, 7200, 5.0, "gpu_util_1h"),
    (0, 7200, 1800, 5.0, "gpu_util_1m"),  # finer than the rollup
    (60, 7200, 3600, 5.0, "gpu_util_1m"),  # not on the hour
    (0, 7200, 3600, 10.0, "gpu_util_1m"),  # another idle threshold than the rollup's
])
def test_the_hourly_rollup_answers_only_what_it_can(start: int, end: int, step: int,
                                                    idle_pct: float, table: str) -> None:
    sql, params = build(HistoryQuery(start=start, end=end, step=step, group_by="node",
                                     cluster="c", idle_pct=idle_pct))
    assert f"FROM {table}\n" in sql
    assert "{" not in sql.replace("{step:", "").replace("{start:", "").replace(
        "{end:", "").replace("{cluster:", "").replace("{idle_pct:", "")
    assert set(params) <= {"step", "start", "end", "cluster", "idle_pct"}
