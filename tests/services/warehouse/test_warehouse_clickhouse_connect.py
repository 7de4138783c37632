"""clickhouse-connect against the embedded endpoint, as every service and analyst uses it."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest
from clickhouse_connect.driver.exceptions import DatabaseError
from warehouse_builders import PIPELINE_ROWS, SAMPLE_COLUMNS, samples

from tests.services.warehouse.conftest import Warehouse

pytestmark = pytest.mark.integration


def _cluster() -> str:
    return f"c{uuid.uuid4().hex[:8]}"


@pytest.mark.parametrize("compress", ["lz4", "zstd", False])
def test_10000_samples_come_back_equal(warehouse: Warehouse, compress: str | bool) -> None:
    client = warehouse.client(compress=compress)
    cluster = _cluster()
    rows = samples(cluster).nodes(5).gpus(8).ticks(250).rows()
    assert len(rows) == 10_000
    summary = client.insert("gpu_samples", rows, column_names=SAMPLE_COLUMNS)
    assert summary.written_rows == 10_000
    got = client.query(f"SELECT {', '.join(SAMPLE_COLUMNS)} FROM gpu_samples "
                       "WHERE cluster = {c:String} ORDER BY node, gpu, ts",
                       parameters={"c": cluster}).result_rows
    assert [list(r) for r in got] == rows


def test_absent_values_are_null_not_zero(writer: Any) -> None:
    cluster = _cluster()
    rows = samples(cluster).ticks(3).without("power_mw", "sm_active", "util_gpu").rows()
    writer.insert("gpu_samples", rows, column_names=SAMPLE_COLUMNS)
    got = writer.query("SELECT countIf(power_mw IS NULL), countIf(sm_active IS NULL), "
                       "countIf(util_gpu IS NULL) FROM gpu_samples WHERE cluster = {c:String}",
                       parameters={"c": cluster}).result_rows
    assert got == [(3, 3, 3)]


@pytest.mark.parametrize("table", sorted(PIPELINE_ROWS))
def test_a_retried_insert_with_the_same_token_is_stored_once(writer: Any, table: str) -> None:
    columns, row = PIPELINE_ROWS[table]
    marker = f"m{uuid.uuid4().hex[:8]}"
    row = [marker if c in ("cluster", "event_id") else v for c, v in zip(columns, row,
                                                                     strict=True)]
    key = "cluster" if "cluster" in columns else "event_id"
    token = {"insert_deduplication_token": f"batch-{marker}"}
    for _ in range(3):
        writer.insert(table, [row], column_names=columns, settings=token)
    count = f"SELECT count() FROM {table} WHERE {key} = {{m:String}}"
    assert writer.query(count, parameters={"m": marker}).result_rows == [(1,)]
    # another token is another batch
    writer.insert(table, [row], column_names=columns,
                  settings={"insert_deduplication_token": f"other-{marker}"})
    expected = 1 if table in ("nodes", "gpu_util_1m") else 2  # Replacing tables keep one
    final = " FINAL" if expected == 1 else ""
    got = writer.query(count.replace(table, table + final), parameters={"m": marker})
    assert got.result_rows == [(expected,)]


@pytest.mark.parametrize("statement", [
    "DROP TABLE gpu_samples",
    "TRUNCATE TABLE alerts",
    "INSERT INTO alerts (alert_id) VALUES ('x')",
    "ALTER TABLE alerts DELETE WHERE 1",
    "CREATE TABLE analyst_made (a UInt8) ENGINE = Memory",
    "SET readonly = 0",
    "  /* hidden */ drop table placements",
])
def test_the_analyst_cannot_write_drop_or_change_settings(analyst: Any, statement: str) -> None:
    with pytest.raises(DatabaseError) as e:
        analyst.command(statement)
    assert "164" in str(e.value)


def test_the_analyst_cannot_insert_blocks_but_can_read(analyst: Any, writer: Any) -> None:
    with pytest.raises(DatabaseError) as e:
        analyst.insert("alerts", [["x"]], column_names=["alert_id"])
    assert "164" in str(e.value)
    # readonly = 2, as a ClickHouse server's read-only profile: query-level settings may change
    assert analyst.query("SELECT getSetting('max_threads')",
                         settings={"max_threads": 1}).result_rows == [(1,)]
    assert analyst.query("SELECT count() >= 0 FROM gpu_samples").result_rows == [(True,)]
    assert writer.query("EXISTS TABLE analyst_made").result_rows == [(0,)]


@pytest.mark.parametrize(("sql", "code"), [
    ("SELEC 1", 62), ("SELECT * FROM no_such_table", 60), ("SELECT no_such_fn(1)", 46),
])
def test_bad_sql_gives_the_clickhouse_code(writer: Any, sql: str, code: int) -> None:
    with pytest.raises(DatabaseError) as e:
        writer.query(sql)
    assert f"code: {code}" in str(e.value)


def test_wrong_password_is_refused(warehouse: Warehouse) -> None:
    with pytest.raises(DatabaseError) as e:
        warehouse.client("analyst", "wrong")
    assert "516" in str(e.value)


def test_session_settings_and_query_parameters(writer: Any) -> None:
    writer.command("SET max_result_rows = 3, result_overflow_mode = 'throw'")
    with pytest.raises(DatabaseError) as e:
        writer.query("SELECT number FROM numbers(10)")
    assert "396" in str(e.value)
    writer.command("SET max_result_rows = 0")
    got = writer.query("SELECT {n:UInt32} + 1, {s:String}, {a:Array(UInt8)}",
                       parameters={"n": 41, "s": "it's", "a": [1, 2]}).result_rows
    assert got == [(42, "it's", [1, 2])]
    assert writer.command("SELECT 7") == 7
    assert writer.ping()


def test_20_concurrent_clients_lose_nothing(warehouse: Warehouse) -> None:
    cluster, errors, batches, per_batch = _cluster(), [], 10, 50

    def work(n: int) -> None:
        try:
            client = warehouse.client(compress="lz4" if n % 2 else "zstd")
            for b in range(batches):
                rows = samples(cluster).ticks(per_batch).rows()
                for r in rows:
                    r[SAMPLE_COLUMNS.index("node")] = f"n{n:02d}"
                    r[SAMPLE_COLUMNS.index("gpu")] = b
                client.insert("gpu_samples", rows, column_names=SAMPLE_COLUMNS)
                client.query("SELECT count() FROM gpu_samples WHERE cluster = {c:String}",
                             parameters={"c": cluster})
            client.close()
        except Exception as e:  # the assertion below reports it
            errors.append(e)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    got = warehouse.client().query(
        "SELECT count(), uniqExact(node, gpu, ts) FROM gpu_samples WHERE cluster = {c:String}",
        parameters={"c": cluster}).result_rows
    assert got == [(20 * batches * per_batch, 20 * batches * per_batch)]
