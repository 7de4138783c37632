"""The embedded engine: chDB handles on one data directory, lent out one call at a time.

chDB hosts one engine per process and lets that process open many handles to it; each handle
keeps its own session state (``SET``, ``USE``) and handles run queries in parallel. So the
endpoint keeps two small pools: writer handles, and reader handles fixed at ``readonly = 1``
so that the engine itself refuses writes and DDL on them. A call names the settings and
database it needs; the handle is brought to exactly that state (only the difference is sent)
before the call runs in a worker thread, so the event loop stays free.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import chdb

from services.warehouse.core import quote_identifier, setting_name_ok
from services.warehouse.errors import UNKNOWN_SETTING, ClickHouseError, from_engine

log = logging.getLogger(__name__)
DEFAULT_DATABASE = "default"


@dataclass(frozen=True)
class Call:
    """One statement for the engine. With ``data`` it is an INSERT fed in format ``fmt``;
    without, a query whose output format is ``fmt`` unless the SQL names one."""

    sql: str | bytes
    fmt: str = "TabSeparated"
    data: bytes | None = None
    params: Mapping[str, str] = field(default_factory=dict)
    settings: Mapping[str, str] = field(default_factory=dict)  # name -> SQL literal
    database: str = DEFAULT_DATABASE
    readonly: bool = False


@dataclass(frozen=True)
class Outcome:
    body: bytes
    read_rows: int = 0
    read_bytes: int = 0
    written_rows: int = 0
    written_bytes: int = 0
    elapsed_s: float = 0.0


@dataclass
class _Handle:
    conn: Any
    applied: dict[str, str] = field(default_factory=dict)
    database: str = DEFAULT_DATABASE


class Engine:
    """Owns the data directory. ``open`` before use, ``close`` after."""

    def __init__(self, path: str | Path, writers: int = 4, readers: int = 4) -> None:
        self.path = Path(path).resolve()
        self._sizes = (writers, readers)
        self._writers: asyncio.Queue[_Handle] = asyncio.Queue()
        self._readers: asyncio.Queue[_Handle] = asyncio.Queue()
        self._all: list[_Handle] = []
        self._pool = ThreadPoolExecutor(max_workers=writers + readers,
                                        thread_name_prefix="chdb")
        self.version = ""

    def open(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        writers, readers = self._sizes
        for i in range(writers + readers):
            handle = _Handle(chdb.connect(f"file:{self.path}"))  # type: ignore[no-untyped-call]
            if i >= writers:
                handle.conn.query("SET readonly = 1", "TabSeparated")
            self._all.append(handle)
            (self._writers if i < writers else self._readers).put_nowait(handle)
        version = self._all[0].conn.query("SELECT version()", "TabSeparated").bytes()
        self.version = version.decode().strip()
        log.info("engine %s open on %s (%d writer, %d reader handles)",
                 self.version, self.path, writers, readers)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        for handle in self._all:
            with contextlib.suppress(Exception):
                handle.conn.close()
        self._all.clear()

    async def run(self, call: Call) -> Outcome:
        for name in call.settings:  # names are interpolated into SET: only identifiers pass
            if not setting_name_ok(name):
                raise ClickHouseError(UNKNOWN_SETTING, f"DB::Exception: Unknown setting '{name}'")
        pool = self._readers if call.readonly else self._writers
        handle = await pool.get()
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._pool, _run, handle, call)
        finally:
            pool.put_nowait(handle)


def _run(handle: _Handle, call: Call) -> Outcome:
    try:
        _prepare(handle, call)
        if call.data is not None:
            return _insert(handle, call)
        result = handle.conn.query(call.sql, call.fmt, params=dict(call.params))
        return Outcome(bytes(result.bytes() or b""), result.rows_read(), result.bytes_read(),
                       result.rows_written(), result.bytes_written(), result.elapsed())
    except ClickHouseError:
        raise
    except Exception as e:  # chDB raises ChdbError or RuntimeError with ClickHouse's text
        raise from_engine(str(e)) from None


def _insert(handle: _Handle, call: Call) -> Outcome:
    assert call.data is not None
    inserter = handle.conn.send_insert(call.sql, call.fmt)
    try:
        if call.data:
            inserter.append(call.data)
        done = inserter.finish()
    except BaseException:
        inserter.cancel()
        raise
    return Outcome(b"", written_rows=done.rows_written, written_bytes=done.bytes_written,
                   elapsed_s=done.elapsed)


def _prepare(handle: _Handle, call: Call) -> None:
    """Bring the handle's settings and database to what the call needs."""
    changes = [f"{k} = DEFAULT" for k in handle.applied if k not in call.settings]
    changes += [f"{k} = {v}" for k, v in call.settings.items() if handle.applied.get(k) != v]
    if changes:
        try:
            handle.conn.query("SET " + ", ".join(changes), "TabSeparated")
        except Exception:
            _reset(handle, set(call.settings))
            raise
        handle.applied = dict(call.settings)
    if handle.database != call.database:
        handle.conn.query(f"USE {quote_identifier(call.database)}", "TabSeparated")
        handle.database = call.database


def _reset(handle: _Handle, also: set[str]) -> None:
    """After a failed SET the handle's state is unknown: put every touched setting back."""
    for name in set(handle.applied) | also:
        with contextlib.suppress(Exception):
            handle.conn.query(f"SET {name} = DEFAULT", "TabSeparated")
    handle.applied = {}

