"""cluster.sql and the Grafana dashboard against the schema the migrations make, in chDB.

cluster.sql is made from the migrations by ``gpufleet cluster-sql``: a test fails when the
checked-in file drifts from what the command writes, others check the rules on made-up
migrations. chDB has no cluster, no Keeper and no Distributed engine to spare, so cluster.sql
is checked twice: every statement as written goes through ClickHouse's parser
(``formatQuery``), and a local form of it (ON CLUSTER dropped, Replicated*MergeTree made
*MergeTree, each Distributed table a Merge table over its local table) is created and compared
with what the migrations create, table by table, view by view, and on the same rows.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from chdb import session
from deploy_model import DEPLOY, migration_objects

from gpufleet.admin.cluster_sql_cmd import ClusterSqlError, render, shard_key
from services.warehouse.migrate import Migration, load
from services.warehouse.sqltext import split_statements

CLUSTER_SQL = split_statements((DEPLOY / "clickhouse" / "cluster.sql").read_text())
MIGRATION_STATEMENTS = [s for m in load() for s in m.statements]
OBJECTS = migration_objects()
TABLES = sorted(n for n, kind in OBJECTS.items() if kind == "TABLE")
VIEWS = sorted(n for n, kind in OBJECTS.items() if kind == "VIEW")
DASHBOARD_FILES = sorted((DEPLOY / "grafana" / "dashboards").glob("*.json"))
DATASOURCE = DEPLOY / "grafana" / "provisioning" / "datasources" / "clickhouse.yaml"
DAY = datetime.now(UTC).date().isoformat()  # today: inside every TTL


def _escape(text: str) -> str:
    """A value for a query parameter (escaped as in TabSeparated)."""
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t")


def local_form(statement: str) -> str:
    """cluster.sql's statement as one server without a cluster can run it."""
    s = statement.replace(" ON CLUSTER '{cluster}'", "")
    s = re.sub(r"Replicated(\w*)MergeTree\('[^']*', '\{replica\}'(?:, )?", r"\1MergeTree(", s)
    return re.sub(r"Distributed\('\{cluster\}', default, (\w+), [^\n]*\)\n",
                  r"Merge(currentDatabase(), '^\1$')\n", s)


@pytest.fixture(scope="module")
def chdb() -> Iterator[Any]:
    """One session: database ``mig`` made by the migrations, ``clu`` by cluster.sql's local form."""
    s = session.Session()
    s.query("CREATE DATABASE mig")
    s.query("CREATE DATABASE clu")
    s.query("USE mig")
    for st in MIGRATION_STATEMENTS:
        s.query(st)
    s.query("USE clu")
    for st in CLUSTER_SQL:
        s.query(local_form(st))
    for db, suffix in (("mig", ""), ("clu", "_local")):
        s.query(f"USE {db}")
        _insert_rows(s, suffix)
    yield s
    s.close()


def _insert_rows(s: Any, suffix: str) -> None:
    """Two GPUs of one node over two hours: one busy job, one idle job, then no job."""
    rows = []
    for minute in range(0, 120, 7):
        for gpu, job, tenant, util in ((0, "j-busy", "t1", 90.0), (1, "j-idle", "t2", 1.0)):
            j, t = (f"'{job}'", f"'{tenant}'") if minute < 90 else ("NULL", "NULL")
            rows.append(f"('local', 'n1', {gpu}, 'uuid-{gpu}', "
                        f"toDateTime('{DAY} 00:00:00', 'UTC') + {minute * 60}, 60, 60, "
                        f"{util}, {util}, {util}, {util}, 1e9, 300000, 18000000, {j}, {t})")
    s.query(f"INSERT INTO gpu_util_1m{suffix} VALUES " + ", ".join(rows))
    s.query(f"INSERT INTO nodes{suffix} (cluster, node, gpu, uuid, model, memory_total_bytes, ts) "
            f"VALUES ('local', 'n1', 0, 'uuid-0', 'H100-80GB', 85899345920, '{DAY} 00:00:00'), "
            f"('local', 'n1', 1, 'uuid-1', 'H100-80GB', 85899345920, '{DAY} 00:00:00')")
    s.query(f"INSERT INTO gpu_samples{suffix} (cluster, node, gpu, uuid, ts, util_gpu, power_mw, "
            f"energy_mj) VALUES ('local', 'n1', 0, 'uuid-0', '{DAY} 00:00:01', 90, 300000, 1000), "
            f"('local', 'n1', 0, 'uuid-0', '{DAY} 00:00:02', 80, 310000, 1310)")


def _rows(s: Any, sql: str) -> list[list[Any]]:
    out: list[list[Any]] = json.loads(s.query(sql, "JSONCompact").bytes())["data"]
    return out


# -- cluster.sql as made from the migrations ---------------------------------------------


def test_cluster_sql_is_what_the_generator_writes() -> None:
    assert (DEPLOY / "clickhouse" / "cluster.sql").read_text() == render(load()), (
        "cluster.sql drifted: gpufleet cluster-sql > deploy/clickhouse/cluster.sql")


@pytest.mark.parametrize(
    ("order_by", "key"),
    [
        ("(cluster, node, gpu, ts)", "cityHash64(cluster, node)"),
        ("(job_id, ts)", "cityHash64(job_id)"),
        ("version", "cityHash64(version)"),
        ("(toDate(ts, 'UTC'), node)", "cityHash64(toDate(ts, 'UTC'))"),
        ("(cluster, tenant)", "cityHash64(cluster)"),
    ],
)
def test_a_table_is_sharded_by_the_head_of_its_sorting_key(order_by: str, key: str) -> None:
    table = f"CREATE TABLE t (x UInt8)\nENGINE = MergeTree\nORDER BY {order_by}"
    assert shard_key("t", table) == key


TABLE = ("CREATE TABLE IF NOT EXISTS t\n(\n    job_id String,\n    ts DateTime\n)\n"
         "ENGINE = MergeTree\nORDER BY (job_id, ts)\nCOMMENT 'rows'")


@pytest.mark.parametrize(
    ("later", "made"),
    [
        ("ALTER TABLE t ADD COLUMN IF NOT EXISTS tenant String",
         ["ALTER TABLE t_local ON CLUSTER '{cluster}' ADD COLUMN IF NOT EXISTS tenant String",
          "ALTER TABLE t ON CLUSTER '{cluster}' ADD COLUMN IF NOT EXISTS tenant String"]),
        ("ALTER TABLE t MODIFY TTL ts + INTERVAL 1 DAY",
         ["ALTER TABLE t_local ON CLUSTER '{cluster}' MODIFY TTL ts + INTERVAL 1 DAY"]),
        ("-- a view over t\n"
         "CREATE VIEW IF NOT EXISTS v AS SELECT * FROM t AS a JOIN t AS b USING job_id",
         ["CREATE VIEW IF NOT EXISTS v ON CLUSTER '{cluster}' AS "
          "SELECT * FROM t AS a GLOBAL JOIN t AS b USING job_id"]),
    ],
)
def test_a_later_migration_gets_its_cluster_form(later: str, made: list[str]) -> None:
    text = render([Migration(1, "t", TABLE), Migration(2, "later", later)], since=2)
    assert [_code(s) for s in split_statements(text)] == made


@pytest.mark.parametrize(
    ("later", "complaint"),
    [
        ("INSERT INTO t VALUES ('j', now())", "0002_later: only CREATE"),
        ("DROP TABLE t", "0002_later: only CREATE"),
        ("ALTER TABLE elsewhere ADD COLUMN x UInt8", "0002_later: ALTER TABLE elsewhere: not a"),
        ("CREATE TABLE IF NOT EXISTS u (x UInt8) ENGINE = Log", "0002_later: u: only *MergeTree"),
        ("CREATE TABLE IF NOT EXISTS u (node String, job_id String) ENGINE = MergeTree\n"
         "ORDER BY node;\nCREATE MATERIALIZED VIEW IF NOT EXISTS mv TO u AS SELECT * FROM t",
         "0002_later: mv: reads t (sharded by cityHash64(job_id)) into u"),
    ],
)
def test_a_statement_without_a_cluster_form_is_refused_named(later: str, complaint: str) -> None:
    with pytest.raises(ClusterSqlError, match=re.escape(complaint)):
        render([Migration(1, "t", TABLE), Migration(2, "later", later)])


# -- cluster.sql as written ------------------------------------------------------------


def _code(statement: str) -> str:
    return "\n".join(x for x in statement.splitlines() if not x.lstrip().startswith("--")).strip()


@pytest.mark.parametrize("statement", MIGRATION_STATEMENTS,
                         ids=lambda s: " ".join(_code(s).split("(")[0].split()[-1:]))
def test_every_migration_statement_creates_if_not_exists(statement: str) -> None:
    # cluster.sql relies on it: `warehouse migrate` after cluster.sql then only records versions.
    assert re.match(r"CREATE (TABLE|VIEW|MATERIALIZED VIEW) IF NOT EXISTS ", _code(statement))


@pytest.mark.parametrize("name", sorted(OBJECTS), ids=str)
def test_cluster_sql_covers_every_migration_object(name: str) -> None:
    def made(obj: str) -> str:
        found = [s for s in CLUSTER_SQL if re.search(rf"IF NOT EXISTS {obj} ON CLUSTER ", s)]
        assert len(found) == 1, f"cluster.sql makes {obj} {len(found)} times"
        return found[0]

    if OBJECTS[name] == "TABLE":
        assert re.search(r"ENGINE = Replicated\w*MergeTree\('/clickhouse/tables/\{shard\}/",
                         made(f"{name}_local"))
        assert f"ENGINE = Distributed('{{cluster}}', default, {name}_local, " in made(name)
    else:
        assert f"CREATE {OBJECTS[name]} IF NOT EXISTS {name} ON CLUSTER" in made(name)


@pytest.mark.parametrize("index", range(len(CLUSTER_SQL)), ids=str)
def test_cluster_statement_parses_and_runs_on_the_cluster(chdb: Any, index: int) -> None:
    statement = CLUSTER_SQL[index]
    assert " ON CLUSTER '{cluster}'" in statement
    chdb.query("SELECT formatQuery({q:String})", "TSVRaw", params={"q": _escape(statement)})


# -- its local form against the migrations ----------------------------------------------

_COLUMNS = ("SELECT name, type, default_kind, default_expression, compression_codec "
            "FROM system.columns WHERE database = '{db}' AND table = '{t}' ORDER BY position")
_TABLE = ("SELECT replaceOne(engine, 'Replicated', ''), partition_key, sorting_key, comment, "
          "extract(engine_full, 'TTL [^S]*') FROM system.tables "
          "WHERE database = '{db}' AND name = '{t}'")


@pytest.mark.parametrize("table", TABLES, ids=str)
def test_local_table_is_the_migrations_table(chdb: Any, table: str) -> None:
    for query in (_COLUMNS, _TABLE):
        expected = _rows(chdb, query.format(db="mig", t=table))
        assert expected, f"{table}: nothing to compare"
        assert _rows(chdb, query.format(db="clu", t=f"{table}_local")) == expected


@pytest.mark.parametrize("name", [*TABLES, *VIEWS], ids=str)
def test_same_rows_read_the_same_through_cluster_names(chdb: Any, name: str) -> None:
    expected_columns = [c[:2] for c in _rows(chdb, _COLUMNS.format(db="mig", t=name))]
    assert [c[:2] for c in _rows(chdb, _COLUMNS.format(db="clu", t=name))] == expected_columns
    query = "SELECT * FROM {db}.{t} ORDER BY ALL"
    expected = _rows(chdb, query.format(db="mig", t=name))
    assert _rows(chdb, query.format(db="clu", t=name)) == expected
    if name in ("gpu_util_1h", "v_idle_allocated", "v_tenant_utilization", "v_nodes_latest"):
        assert expected, f"{name}: the rows inserted should show here"


# -- Grafana -----------------------------------------------------------------------------


def _queries() -> list[tuple[str, str]]:
    out = []
    for path in DASHBOARD_FILES:
        dash = json.loads(path.read_text())
        for var in dash["templating"]["list"]:
            out.append((f"{path.stem}:${var['name']}", var["query"]))
        for panel in dash["panels"]:
            for target in panel["targets"]:
                out.append((f"{path.stem}:{panel['title']}", target["rawSql"]))
    return out


QUERIES = _queries()
_MACROS = (
    (r"\$__timeFilter\((\w+)\)", rf"(\1 >= toDateTime('{DAY} 00:00:00', 'UTC') "
                                 rf"AND \1 <= toDateTime('{DAY} 23:59:59', 'UTC'))"),
    (r"\$__timeInterval\((\w+)\)", r"toStartOfInterval(toDateTime(\1), INTERVAL 300 second)"),
    (r"\$__fromTime", f"toDateTime('{DAY} 00:00:00', 'UTC')"),
    (r"\$__toTime", f"toDateTime('{DAY} 23:59:59', 'UTC')"),
    (r"\$\{cluster:singlequote\}", "'local'"),
)


def grafana_to_sql(query: str) -> str:
    for macro, sql in _MACROS:
        query = re.sub(macro, sql, query)
    assert "$" not in query, f"a macro left: {query}"
    return query


def test_dashboards_exist_with_panels() -> None:
    assert DASHBOARD_FILES and len(QUERIES) >= 5


@pytest.mark.parametrize("title,query", QUERIES, ids=[t for t, _ in QUERIES])
def test_dashboard_query_names_only_migration_objects(title: str, query: str) -> None:
    named = set(re.findall(r"\b(?:FROM|JOIN)\s+([A-Za-z_][\w.]*)", query))
    assert named and named <= set(OBJECTS), f"{title}: {named - set(OBJECTS)}"


@pytest.mark.parametrize("db", ["mig", "clu"])
@pytest.mark.parametrize("title,query", QUERIES, ids=[t for t, _ in QUERIES])
def test_dashboard_query_runs_and_finds_the_rows(chdb: Any, db: str, title: str,
                                                 query: str) -> None:
    chdb.query(f"USE {db}")
    assert _rows(chdb, grafana_to_sql(query)), f"{title}: no rows from the inserted ones"


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.name)
def test_dashboard_uses_the_provisioned_data_source(path: Path) -> None:
    source = yaml.safe_load(DATASOURCE.read_text())["datasources"][0]
    assert source["type"] == "grafana-clickhouse-datasource"
    dash = json.loads(path.read_text())
    used = {(p["datasource"]["type"], p["datasource"]["uid"]) for p in dash["panels"]}
    used |= {(t["datasource"]["type"], t["datasource"]["uid"])
             for p in dash["panels"] for t in p["targets"]}
    assert used == {(source["type"], source["uid"])}
