"""The ClickHouse sink: column-oriented batch inserts, each with a de-duplication token.

A batch re-sent with the same token (after a crash, or a retry whose answer was lost) is
stored once, because the tables keep a ``non_replicated_deduplication_window``. The sink
learns each table's columns and types at start: it sends only columns the table has,
converts timestamps (seconds, float) to the column's ticks, and fills ``None`` in non-nullable
columns with the type's zero. A column that is ``None`` throughout a batch is left out (the
table fills it: NULL, or the zero); one with no ``None`` is sent as its type without Nullable,
which serializes far cheaper (ClickHouse converts Native input to the column's type,
``input_format_native_allow_types_conversion``, on by default since 23.3).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from clickhouse_connect.datatypes.base import ClickHouseType
from clickhouse_connect.datatypes.registry import get_from_name
from clickhouse_connect.driver.exceptions import Error as ClickHouseError

from gpufleet import clickhouse
from gpufleet.retry import Outage, first_line, retrying, warehouse_transient

from .rows import Columns

log = logging.getLogger(__name__)

TABLES = ("gpu_samples", "gpu_util_1m", "job_events", "placements", "nodes", "alerts")
_DT64 = re.compile(r"DateTime64\((\d)")


class SinkError(Exception):
    """ClickHouse refused something that retrying cannot fix (credentials, the schema)."""


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    default: bool = False  # the table gives it a DEFAULT (or MATERIALIZED...) expression

    @property
    def nullable(self) -> bool:
        return "Nullable(" in self.type

    @property
    def ticks(self) -> int | None:
        """Ticks per second when this is a time column, else None."""
        m = _DT64.search(self.type)
        if m:
            return int(10 ** int(m.group(1)))
        return 1 if "DateTime" in self.type else None

    @property
    def integer(self) -> bool:
        base = self.type.removeprefix("LowCardinality(").removeprefix("Nullable(")
        return base.startswith(("UInt", "Int"))

    @property
    def not_null(self) -> str:
        """The type without Nullable: how a batch with no NULL in this column is sent (the
        server converts it to the column's type)."""
        t = self.type
        if t.startswith("Nullable("):
            return t.removeprefix("Nullable(")[:-1]
        if t.startswith("LowCardinality(Nullable("):
            return "LowCardinality(" + t.removeprefix("LowCardinality(Nullable(")[:-1]
        return t

    def zero(self) -> Any:
        t = self.type.removeprefix("LowCardinality(")
        if t.startswith("Array("):
            return []
        if t.startswith("Map("):
            return {}
        if t.startswith(("String", "Enum", "UUID", "FixedString")):
            return ""
        return 0


def convert(col: Column, values: list[Any], nulls: int | None = None) -> list[Any]:
    """The values as the column takes them: time in ticks, whole numbers for integers, the
    type's zero for ``None`` where the column is not Nullable. ``nulls``: how many are None,
    when known."""
    if nulls is None:
        nulls = values.count(None)
    ticks = col.ticks
    if ticks is not None:  # samples of one message share their time: convert each time once
        memo: dict[Any, Any] = {v: int(v * ticks) for v in set(values) if v is not None}
        if nulls:
            memo[None] = None
        return list(map(memo.__getitem__, values))
    if col.integer and isinstance(next((v for v in values if v is not None), None), float):
        values = list(map(round, values)) if not nulls else [
            None if v is None else round(v) for v in values]
    if nulls and not col.nullable:
        zero = col.zero()
        return [zero if v is None else v for v in values]
    return values


@functools.cache
def ch_type(name: str) -> ClickHouseType:
    return get_from_name(name)


class ClickHouseSink:
    """Every call waits out a warehouse that is away (``outage`` shows it) and raises
    ``SinkError`` for what retrying cannot fix."""

    def __init__(self, url: str, outage: Outage | None = None) -> None:
        self._url = url
        self.outage = outage or Outage("warehouse")
        self._client: Any = None
        self.columns: dict[str, dict[str, Column]] = {}
        self.rows_written: dict[str, int] = {}

    async def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return await retrying(self.outage, warehouse_transient,
                                  lambda: asyncio.to_thread(fn, *args, **kwargs))
        except ClickHouseError as e:
            raise SinkError(f"the warehouse refused {what}: {first_line(e)}") from e

    async def start(self, tables: Iterable[str] = TABLES, wait_s: float = 60.0) -> None:
        """Connect and learn the tables; waits for the warehouse, and for the tables
        (``warehouse migrate`` may still be running); fails when they do not appear, rather
        than drop rows."""
        self._client = await self._call("the connection", clickhouse.client, self._url,
                                        connect_timeout_s=5, send_receive_timeout_s=60)
        deadline = time.monotonic() + wait_s
        while True:
            missing = [t for t in tables if not await self._learn(t)]
            if not missing:
                return
            if time.monotonic() > deadline:
                raise SinkError(f"tables missing in the warehouse: {', '.join(missing)} "
                                "(run gpufleet warehouse migrate)")
            log.warning("waiting for tables %s", ", ".join(missing))
            await asyncio.sleep(1.0)

    async def _learn(self, table: str) -> bool:
        result = await self._call(
            f"the columns of {table}", self._client.query,
            "SELECT name, type, default_kind != '' FROM system.columns "
            "WHERE database = currentDatabase() AND table = {t:String} ORDER BY position",
            parameters={"t": table})
        self.columns[table] = {n: Column(n, t, bool(d)) for n, t, d in result.result_rows}
        return bool(self.columns[table])

    async def close(self) -> None:
        if self._client is not None:
            await asyncio.to_thread(self._client.close)

    async def insert(self, table: str, cols: Columns, token: str) -> int:
        """Insert the columns into ``table`` once; returns the rows sent."""
        known = self.columns.get(table, {})
        names: list[str] = []
        types: list[ClickHouseType] = []
        data: list[list[Any]] = []
        for name, values in cols.items():
            col = known.get(name)
            if col is None or not values:
                continue
            nulls = values.count(None)
            if nulls == len(values) and not col.default:
                continue  # the table fills it: NULL, or the type's zero
            names.append(name)
            types.append(ch_type(col.type if nulls and col.nullable else col.not_null))
            data.append(convert(col, values, nulls))
        if not data:
            return 0
        settings = {"insert_deduplication_token": token}
        # a retry of an insert whose answer was lost is stored once: the token says so
        await self._call(f"an insert into {table}", self._client.insert, table, data,
                         column_names=names, column_types=types, column_oriented=True,
                         settings=settings)
        n = len(data[0])
        self.rows_written[table] = self.rows_written.get(table, 0) + n
        return n

    async def query(self, sql: str, **parameters: Any) -> list[tuple[Any, ...]]:
        result = await self._call("a query", self._client.query, sql, parameters=parameters)
        return list(result.result_rows)
