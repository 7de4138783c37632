"""Numbered schema migrations (``migrations/NNNN_name.sql``), applied once each, in order.

Applied versions are recorded in ``schema_migrations``; running again applies only what is new.
The same files serve the embedded endpoint and a ClickHouse server (any ClickHouse HTTP URL).
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpufleet import clickhouse
from services.warehouse.sqltext import split_statements

log = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).parent / "migrations"
_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

LEDGER = """
CREATE TABLE IF NOT EXISTS schema_migrations
(
    version UInt32,
    name String,
    checksum String,
    applied_at DateTime('UTC') DEFAULT now()
)
ENGINE = ReplacingMergeTree
ORDER BY version
COMMENT 'One row per schema migration applied to this database'
"""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()[:16]

    @property
    def statements(self) -> list[str]:
        return split_statements(self.sql)


def load(folder: Path = MIGRATIONS) -> list[Migration]:
    """Every migration file in ``folder``, by version; two files of one version are an error."""
    found: dict[int, Migration] = {}
    for path in sorted(folder.glob("*.sql")):
        m = _FILE.match(path.name)
        if not m:
            raise ValueError(f"{path.name}: a migration is named NNNN_name.sql")
        version = int(m.group(1))
        if version in found:
            raise ValueError(f"{path.name}: version {version} is already {found[version].name}")
        found[version] = Migration(version, m.group(2), path.read_text())
    return [found[v] for v in sorted(found)]


def pending(migrations: Iterable[Migration], applied: set[int]) -> list[Migration]:
    return [m for m in migrations if m.version not in applied]


def connect(url: str) -> Any:
    """A clickhouse-connect client for ``http://user:password@host:port/database``."""
    return clickhouse.client(url)


def migrate(client: Any, migrations: list[Migration] | None = None) -> list[Migration]:
    """Apply what is not applied yet; returns what was applied now."""
    client.command(LEDGER)
    rows = client.query("SELECT version, checksum FROM schema_migrations FINAL").result_rows
    applied = {int(v): str(c) for v, c in rows}
    todo = migrations if migrations is not None else load()
    for m in todo:
        if m.version in applied and applied[m.version] != m.checksum:
            log.warning("migration %04d_%s changed after it was applied; not applied again",
                        m.version, m.name)
    done = []
    for m in pending(todo, set(applied)):
        for statement in m.statements:
            client.command(statement)
        client.insert("schema_migrations", [[m.version, m.name, m.checksum]],
                      column_names=["version", "name", "checksum"])
        log.info("applied migration %04d_%s", m.version, m.name)
        done.append(m)
    return done
