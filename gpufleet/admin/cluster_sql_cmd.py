"""``gpufleet cluster-sql``: the warehouse schema for a ClickHouse cluster, from the migrations.

The migrations are written for one server. Their cluster form follows four rules:

- a table ``T`` becomes ``T_local`` (``Replicated*MergeTree``, same columns, keys, TTL, settings,
  with ``replicated_deduplication_window`` for ``non_replicated_deduplication_window``) and ``T``,
  a ``Distributed`` table over it, so services and analysts keep the names they know;
- ``T`` is sharded by the first column of its sorting key, or by ``(cluster, node)`` when the
  key starts with them: rows that merge together (Replacing, Aggregating, ``FINAL``) share a
  shard, and a node's GPUs stay together;
- a materialized view reads and writes the ``_local`` tables on each shard (its source and
  target must be sharded alike, checked here); a view reads the ``Distributed`` tables, its
  joins made ``GLOBAL``;
- ``ALTER TABLE T`` changes ``T_local`` and, for a column change, ``T``.

Every statement runs ``ON CLUSTER '{cluster}'``. The output is checked in as
``deploy/clickhouse/cluster.sql`` (a test fails when it drifts from the migrations).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass

from services.warehouse.migrate import LEDGER, Migration, load
from services.warehouse.sqltext import split_statements

ON_CLUSTER = "ON CLUSTER '{cluster}'"
_CREATE = re.compile(r"^CREATE (TABLE|VIEW|MATERIALIZED VIEW) IF NOT EXISTS (\w+)\b")
_ALTER = re.compile(r"^ALTER TABLE (\w+)\b")
_ENGINE = re.compile(r"\bENGINE = (\w*)MergeTree\b(?:\(([^)]*)\))?")
_ORDER_BY = re.compile(r"^ORDER BY (.+)$", re.MULTILINE)
_TO = re.compile(r"\bTO (\w+) AS\b")
_JOIN = re.compile(r"(?<!GLOBAL )\b((?:(?:LEFT|RIGHT|FULL|INNER|CROSS) )?(?:OUTER )?"
                   r"(?:ANY |ALL |SEMI |ANTI )?JOIN)\b")

HEADER = """\
-- The gpufleet warehouse on a ClickHouse cluster: services/warehouse/migrations, replicated and
-- sharded. Made by `gpufleet cluster-sql > deploy/clickhouse/cluster.sql`; do not edit by hand
-- (a test compares it with the migrations). The rules are in gpufleet/admin/cluster_sql_cmd.py.
--
-- Needs, on every server: macros {cluster}, {shard} and {replica}, a remote_servers entry
-- named as {cluster}, and ClickHouse Keeper. Apply once, before `gpufleet warehouse migrate`:
--   clickhouse-client --host <any server> --user <admin> --multiquery < cluster.sql
--   gpufleet warehouse migrate --url http://<writer>:<password>@<any server>:8123/default
-- Every migration statement is CREATE ... IF NOT EXISTS, so migrate then finds every object
-- and only records the versions in schema_migrations (replicated to every server here).
-- After a new migration NNNN: `gpufleet cluster-sql --since NNNN | clickhouse-client ...`,
-- then migrate (migrate alone would change one server only).
-- Inserts through a Distributed table keep their insert_deduplication_token only when they
-- are forwarded synchronously: give the writer user distributed_foreground_insert = 1.
"""


class ClusterSqlError(ValueError):
    """A migration statement has no cluster form here; the message names it."""


@dataclass
class _Schema:
    """What the statements so far made: each table's shard key."""

    shard_keys: dict[str, str]


def _code(statement: str) -> str:
    """The statement without its whole-line comments."""
    lines = [x for x in statement.strip().splitlines() if not x.lstrip().startswith("--")]
    return "\n".join(lines).strip().rstrip(";").strip()


def _top_level(items: str) -> list[str]:
    """``a, f(b, c), d`` -> ``[a, f(b, c), d]``."""
    out, depth, start = [], 0, 0
    for i, c in enumerate(items):
        depth += {"(": 1, ")": -1}.get(c, 0)
        if c == "," and depth == 0:
            out.append(items[start:i].strip())
            start = i + 1
    return [*out, items[start:].strip()]


def shard_key(table: str, statement: str) -> str:
    """``cityHash64(...)`` of the sorting key's first column, or of (cluster, node)."""
    found = _ORDER_BY.search(statement)
    if not found:
        raise ClusterSqlError(f"{table}: no ORDER BY line to shard by")
    key = found.group(1).strip()
    columns = _top_level(key[1:-1]) if key.startswith("(") and key.endswith(")") else [key]
    by = columns[:2] if columns[:2] == ["cluster", "node"] else columns[:1]
    return f"cityHash64({', '.join(by)})"


def _table(name: str, statement: str, schema: _Schema) -> list[str]:
    engine = _ENGINE.search(statement)
    if not engine:
        raise ClusterSqlError(f"{name}: only *MergeTree tables have a cluster form here")
    args = f", {engine.group(2)}" if engine.group(2) else ""
    path = f"'/clickhouse/tables/{{shard}}/gpufleet/{name}_local', '{{replica}}'"
    local = _ENGINE.sub(f"ENGINE = Replicated{engine.group(1)}MergeTree({path}{args})",
                        statement, count=1)
    local = local.replace("non_replicated_deduplication_window", "replicated_deduplication_window")
    local = _CREATE.sub(rf"CREATE TABLE IF NOT EXISTS {name}_local {ON_CLUSTER}", local, count=1)
    key = schema.shard_keys[name] = shard_key(name, statement)
    comment = re.search(r"^COMMENT '.*'$", statement, re.MULTILINE)
    distributed = (f"CREATE TABLE IF NOT EXISTS {name} {ON_CLUSTER} AS {name}_local\n"
                   f"ENGINE = Distributed('{{cluster}}', default, {name}_local, {key})")
    if comment:
        distributed += "\n" + comment.group(0)
    return [f"-- sharded by {key}\n{local}", distributed]


def _materialized_view(name: str, statement: str, schema: _Schema) -> str:
    target = _TO.search(statement)
    if not target or target.group(1) not in schema.shard_keys:
        raise ClusterSqlError(f"{name}: a materialized view needs TO <a migration's table>")
    sources = [t for t in schema.shard_keys
               if re.search(rf"\b(?:FROM|JOIN) {t}\b", statement)]
    for source in sources:
        if schema.shard_keys[source] != schema.shard_keys[target.group(1)]:
            raise ClusterSqlError(
                f"{name}: reads {source} (sharded by {schema.shard_keys[source]}) into "
                f"{target.group(1)} (sharded by {schema.shard_keys[target.group(1)]}): "
                "a shard would roll up rows that belong to another")
        statement = re.sub(rf"\b(FROM|JOIN) {source}\b", rf"\1 {source}_local", statement)
    statement = _TO.sub(rf"TO {target.group(1)}_local AS", statement, count=1)
    return _CREATE.sub(rf"CREATE MATERIALIZED VIEW IF NOT EXISTS {name} {ON_CLUSTER}", statement,
                       count=1)


def _view(name: str, statement: str) -> str:
    statement = _JOIN.sub(r"GLOBAL \1", statement)
    return _CREATE.sub(rf"CREATE VIEW IF NOT EXISTS {name} {ON_CLUSTER}", statement, count=1)


def _alter(table: str, statement: str, schema: _Schema) -> list[str]:
    if table not in schema.shard_keys:
        raise ClusterSqlError(f"ALTER TABLE {table}: not a table of the migrations")
    rest = statement[len(f"ALTER TABLE {table}"):]
    out = [f"ALTER TABLE {table}_local {ON_CLUSTER}{rest}"]
    if re.search(r"\bCOLUMN\b", rest):
        out.append(f"ALTER TABLE {table} {ON_CLUSTER}{rest}")
    return out


def cluster_form(statement: str, schema: _Schema) -> list[str]:
    """One migration statement as the statements that make it on a cluster."""
    code = _code(statement)
    if created := _CREATE.match(code):
        kind, name = created.groups()
        if kind == "TABLE":
            return _table(name, code, schema)
        if kind == "MATERIALIZED VIEW":
            return [_materialized_view(name, code, schema)]
        return [_view(name, code)]
    if altered := _ALTER.match(code):
        return _alter(altered.group(1), code, schema)
    raise ClusterSqlError("only CREATE TABLE|VIEW|MATERIALIZED VIEW IF NOT EXISTS and ALTER "
                          f"TABLE have a cluster form here, not: {code.splitlines()[0]}")


def _ledger() -> str:
    code = _code(LEDGER)
    path = "'/clickhouse/tables/all/gpufleet/schema_migrations', '{replica}'"
    code = _ENGINE.sub(f"ENGINE = ReplicatedReplacingMergeTree({path})", code, count=1)
    return _CREATE.sub(rf"CREATE TABLE IF NOT EXISTS schema_migrations {ON_CLUSTER}", code,
                       count=1)


def render(migrations: Iterable[Migration], since: int = 0) -> str:
    """The cluster form of ``migrations`` (those from version ``since`` on) as one SQL text."""
    schema = _Schema({})
    parts = [HEADER]
    if since <= 1:
        parts.append("-- Ledger of the migrations, one copy on every server (no {shard} in its "
                     f"path).\n{_ledger()};\n")
    for m in migrations:
        try:
            made = [s for st in split_statements(m.sql) for s in cluster_form(st, schema)]
        except ClusterSqlError as e:
            raise ClusterSqlError(f"{m.version:04d}_{m.name}: {e}") from e
        if m.version >= since:
            title = f"-- {m.version:04d}_{m.name} "
            parts.append(title + "-" * (92 - len(title)) + "\n")
            parts.extend(f"{s};\n" for s in made)
    return "\n".join(parts)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--since", type=int, default=0, metavar="VERSION",
                   help="only the migrations from this version on (to apply a new one)")


def run(args: argparse.Namespace) -> int:
    try:
        sys.stdout.write(render(load(), args.since))
    except ClusterSqlError as e:
        print(f"gpufleet cluster-sql: {e}", file=sys.stderr)
        return 1
    return 0
