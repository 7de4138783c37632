"""Migrations: in order, once each, the same on a second run; every object explained."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from services.warehouse import migrate
from services.warehouse.migrate import Migration, pending

pytestmark = pytest.mark.integration

CONTRACT = {
    "gpu_samples": {"cluster", "node", "gpu", "uuid", "ts", "util_gpu", "power_mw", "energy_mj",
                    "ecc_volatile_corrected", "remapped_rows_failure", "tensor_active"},
    "gpu_util_1m": {"cluster", "node", "gpu", "uuid", "window_start", "window_s", "samples",
                    "util_mean", "util_min", "util_max", "util_p95", "mem_used_bytes_mean",
                    "power_mw_mean", "energy_mj", "job_id", "tenant"},
    "gpu_util_1h": {"cluster", "node", "gpu", "hour", "job_id", "tenant", "gpu_seconds"},
    "job_events": {"job_id", "state", "tenant", "node", "gpus", "exit_code", "reason", "ts"},
    "placements": {"job_id", "tenant", "node", "gpus", "gpu_milli", "member", "attempt", "ts"},
    "nodes": {"cluster", "node", "gpu", "uuid", "model", "memory_total_bytes", "online", "ts"},
    "alerts": {"alert_id", "kind", "state", "severity", "message", "since", "ts"},
}


def _schema(client: Any) -> list[tuple[Any, ...]]:
    return list(client.query(
        "SELECT table, name, type, compression_codec FROM system.columns "
        "WHERE database = currentDatabase() ORDER BY table, name").result_rows)


def test_migrating_again_changes_nothing(warehouse: Any, writer: Any) -> None:
    before = _schema(writer)
    ledger = writer.query("SELECT count() FROM schema_migrations").result_rows
    assert migrate.migrate(migrate.connect(warehouse.writer_url)) == []
    assert _schema(writer) == before
    assert writer.query("SELECT count() FROM schema_migrations").result_rows == ledger
    assert ledger == [(len(migrate.load()),)]


@pytest.mark.parametrize("table", sorted(CONTRACT))
def test_tables_have_the_contract_columns(writer: Any, table: str) -> None:
    names = {r[0] for r in writer.query(
        "SELECT name FROM system.columns WHERE table = {t:String}", parameters={"t": table}
    ).result_rows}
    assert CONTRACT[table] <= names


def test_every_table_and_view_has_a_comment(writer: Any) -> None:
    rows = writer.query("SELECT name, comment FROM system.tables "
                        "WHERE database = currentDatabase() AND name NOT LIKE '%http_insert%'"
                        ).result_rows
    assert len(rows) >= 15
    assert [name for name, comment in rows if not comment] == []


def test_pipeline_tables_deduplicate_inserts(writer: Any) -> None:
    rows = writer.query("SELECT name, create_table_query FROM system.tables "
                        "WHERE database = currentDatabase() AND name IN {t:Array(String)}",
                        parameters={"t": ["gpu_samples", "gpu_util_1m", "job_events",
                                          "placements", "nodes", "alerts"]}).result_rows
    assert len(rows) == 6
    assert all("non_replicated_deduplication_window" in q for _, q in rows)


VIEWS = {"v_job_utilization", "v_tenant_utilization", "v_node_utilization", "v_nodes_latest",
         "v_model_utilization", "v_idle_allocated", "v_job_energy", "v_gpu_utilization_raw"}
VIEWS |= {"v_job_rightsizing", "v_reclaims", "v_gpu_drains"}  # 0005: the closed loop


def test_views_answer(writer: Any) -> None:
    views = {name for (name,) in writer.query(
        "SELECT name FROM system.tables WHERE engine = 'View' "
        "AND database = currentDatabase()").result_rows}
    assert views == VIEWS
    for view in sorted(views):
        writer.query(f"SELECT * FROM {view} LIMIT 1")


def test_pending_is_what_is_not_applied() -> None:
    ms = [Migration(v, f"m{v}", "SELECT 1") for v in (1, 2, 3)]
    assert [m.version for m in pending(ms, {1, 3})] == [2]


@pytest.mark.parametrize(("names", "error"), [
    (["0001_a.sql", "0001_b.sql"], "already"),
    (["1_a.sql"], "NNNN_name.sql"),
])
def test_bad_migration_files_are_refused(tmp_path: Path, names: list[str], error: str) -> None:
    for n in names:
        (tmp_path / n).write_text("SELECT 1")
    with pytest.raises(ValueError, match=error):
        migrate.load(tmp_path)


def test_the_migrate_command_defaults_to_the_configured_url(warehouse: Any) -> None:
    env = {**os.environ, "GPUFLEET_CLICKHOUSE_URL": warehouse.writer_url}
    out = subprocess.run([sys.executable, "-m", "gpufleet.cli", "warehouse", "migrate"],
                         env=env, capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "migrations applied: 0"
