"""The warehouse: insert rate through the endpoint next to chDB in-process, bytes per stored
GPU sample, and the latency of the analyst views over a day of a 1,000-GPU fleet at 1 Hz."""

from __future__ import annotations

import datetime as dt
import functools
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import chdb
import clickhouse_connect

from bench.report import Result
from bench.warehouse_fleet import nodes_sql, rollup_sql, samples_sql
from gpufleet.localkafka import free_port
from services.warehouse.migrate import load
from services.warehouse.sqltext import split_statements
from services.warehouse.testing import migrated, start_warehouse, stop_warehouse

AREA = "warehouse"
VIEWS = {  # what an analyst asks, by view
    "v_job_utilization": "SELECT * FROM v_job_utilization ORDER BY gpu_hours DESC LIMIT 20",
    "v_tenant_utilization": "SELECT * FROM v_tenant_utilization ORDER BY gpu_hours DESC",
    "v_node_utilization": "SELECT * FROM v_node_utilization ORDER BY util_mean LIMIT 20",
    "v_model_utilization": "SELECT * FROM v_model_utilization",
    "v_idle_allocated": "SELECT * FROM v_idle_allocated ORDER BY idle_gpu_hours DESC LIMIT 20",
    "v_job_energy": "SELECT * FROM v_job_energy ORDER BY energy_kwh DESC LIMIT 20",
}
RAW = {
    "raw: per-GPU day summary (v_gpu_utilization_raw, all rows)":
        "SELECT * FROM v_gpu_utilization_raw ORDER BY util_mean LIMIT 20",
    "raw: fleet util per minute (all rows)":
        "SELECT toStartOfMinute(ts) AS m, avg(util_gpu) FROM gpu_samples GROUP BY m "
        "ORDER BY m FORMAT Null",
    "raw: one node's day at 1 s":
        "SELECT gpu, ts, util_gpu, power_mw FROM gpu_samples WHERE cluster = 'bench' "
        "AND node = 'n0007' ORDER BY gpu, ts FORMAT Null",
}


def _timed(fn: Callable[[], Any], repeat: int = 1) -> float:
    """The median wall time of ``fn`` in seconds."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _insert_rates(client: Any, port: int, data: Path, rows: int, batches: int,
                  ) -> list[Result]:
    """Rows/s into gpu_samples: the endpoint (Native blocks, and Python rows through
    clickhouse-connect) next to chDB in this process, fed the same Native blocks."""
    day = (dt.date.today() - dt.timedelta(days=1)).isoformat()
    gpus = rows // 60
    client.command(samples_sql(gpus, 60, day).replace("'bench'", "'native'"))
    native = client.raw_query("SELECT * FROM gpu_samples WHERE cluster = 'native' FORMAT Native")
    py = client.query("SELECT * FROM gpu_samples WHERE cluster = 'native'")
    columns, py_rows = list(py.column_names), py.result_rows
    client.command("TRUNCATE TABLE gpu_samples")
    compressed = clickhouse_connect.get_client(host="127.0.0.1", port=port, compress="lz4")
    conn = chdb.connect(f"file:{data / 'inprocess'}")  # type: ignore[no-untyped-call]
    for m in load():
        for statement in m.statements:
            conn.query(statement, "TabSeparated")

    def in_process() -> None:
        inserter = conn.send_insert("INSERT INTO gpu_samples", "Native")
        inserter.append(native)
        inserter.finish()

    def endpoint() -> None:
        compressed.raw_insert("gpu_samples", None, native, fmt="Native")

    def python_rows() -> None:
        compressed.insert("gpu_samples", py_rows, column_names=columns)

    # Interleaved, one batch of each in turn, so that both see the same machine load.
    times: dict[str, list[float]] = {"local": [], "endpoint": [], "python": []}
    for _ in range(batches + 1):
        for name, fn in (("local", in_process), ("endpoint", endpoint), ("python", python_rows)):
            times[name].append(_timed(fn))
    conn.close()
    client.command("TRUNCATE TABLE gpu_samples")
    local, endpoint_s, python_s = (statistics.median(times[k][1:])
                                   for k in ("local", "endpoint", "python"))
    return [
        Result(AREA, "insert rows/s, chDB in-process (Native)", rows / local, "rows/s",
               note=f"median of {batches} batches of {rows:,} rows"),
        Result(AREA, "insert rows/s, endpoint (Native, lz4)", rows / endpoint_s, "rows/s",
               note="clickhouse-connect raw_insert"),
        Result(AREA, "endpoint / in-process insert ratio", local / endpoint_s, "x", aim="> 0.5"),
        Result(AREA, "insert rows/s, clickhouse-connect insert() of Python rows",
               rows / python_s, "rows/s", note="includes client-side encoding"),
    ]


def _fleet_day(client: Any, gpus: int, seconds: int) -> list[Result]:
    day = (dt.date.today() - dt.timedelta(days=1)).isoformat()
    rows = gpus * seconds
    load_s = _timed(lambda: client.command(samples_sql(gpus, seconds, day)))
    roll_s = _timed(lambda: client.command(rollup_sql(day)))
    client.command(nodes_sql(gpus, day))
    settle_s = _settle(client)
    stored = client.query(
        "SELECT sum(rows), sum(data_compressed_bytes), sum(data_uncompressed_bytes), count() "
        "FROM system.parts WHERE active AND table = 'gpu_samples' "
        "AND database = currentDatabase()").result_rows[0]
    return [
        Result(AREA, "generate raw samples in-engine", rows / load_s, "rows/s",
               note=f"{gpus:,} GPUs x {seconds:,} s = {rows:,} rows"),
        Result(AREA, "build 1-min rollups from raw", roll_s, "s",
               note=f"{gpus * seconds // 60:,} windows, 1 h by materialized view"),
        Result(AREA, "bytes per stored GPU sample", stored[1] / max(stored[0], 1), "B",
               aim="<= 6", note=f"{stored[2] / max(stored[1], 1):.0f}x compression, "
                                f"{stored[0]:,} rows, {stored[3]} parts"),
        Result(AREA, "background merges after loading", settle_s, "s",
               note="waited (at most 180 s) before timing queries"),
    ]


def _settle(client: Any, limit_s: float = 180.0) -> float:
    """Wait until the engine has merged what was just loaded, as it would have a day later."""
    start = time.perf_counter()
    while time.perf_counter() - start < limit_s:
        if client.command("SELECT count() FROM system.merges") == 0:
            break
        time.sleep(1)
    return time.perf_counter() - start


def _latencies(analyst: Any) -> list[Result]:
    out = []
    for name, sql in VIEWS.items():
        analyst.query(sql)  # warm
        s = _timed(functools.partial(analyst.query, sql), repeat=5)
        out.append(Result(AREA, f"view {name}", s * 1000, "ms", aim="< 100 (rollup)"))
    for name, sql in RAW.items():
        analyst.raw_query(sql)
        s = _timed(functools.partial(analyst.raw_query, sql), repeat=3)
        out.append(Result(AREA, name, s * 1000, "ms", aim="< 1000 (raw scan)"))
    return out


def run(quick: bool) -> list[Result]:
    gpus, seconds = (100, 3600) if quick else (1000, 86_400)
    rows, batches = (10_000, 5) if quick else (100_000, 10)
    with tempfile.TemporaryDirectory(prefix="bench-warehouse-") as tmp:
        data, port = Path(tmp), free_port()
        proc = start_warehouse(data / "endpoint", port)
        try:
            migrated(port)
            client = clickhouse_connect.get_client(host="127.0.0.1", port=port,
                                                   send_receive_timeout=1800)
            results = _insert_rates(client, port, data, rows, batches)
            results += _fleet_day(client, gpus, seconds)
            analyst = clickhouse_connect.get_client(host="127.0.0.1", port=port,
                                                    username="analyst", password="")
            results += _latencies(analyst)
        finally:
            stop_warehouse(proc)
    for (_, sql) in [*VIEWS.items(), *RAW.items()]:
        assert split_statements(sql) == [sql]  # each is one statement
    return results
