"""The embedded engine: chDB handles on one data directory, lent out one call at a time.

chDB hosts one engine per process and lets that process open many handles to it; each handle
keeps its own session state (``SET``, ``USE``) and handles run queries in parallel. So the
endpoint keeps two small pools: writer handles, and reader handles fixed at ``readonly = 2``
so that the engine itself refuses writes and DDL on them; a session has a handle of its own.
A call names the settings and database it needs; the handle is brought to exactly that state
(only the difference is sent) before the call runs in a worker thread, so the event loop stays
free.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import chdb

from services.warehouse.errors import (
    SYNTAX_ERROR,
    TIMEOUT_EXCEEDED,
    UNKNOWN_SETTING,
    ClickHouseError,
    from_engine,
)
from services.warehouse.guard import Policy, check, parse_tree
from services.warehouse.request import External
from services.warehouse.sqltext import (
    quote_identifier,
    quote_literal,
    setting_name_ok,
    split_statements,
)

log = logging.getLogger(__name__)
_PROBE = re.compile(r"\s*:?\s*In scope SELECT formatQuery\(.*$", re.DOTALL)
DEFAULT_DATABASE = "default"


@dataclass(frozen=True)
class Call:
    """One statement for the engine. With ``data`` it is an INSERT fed in format ``fmt``;
    without, a query whose output format is ``fmt`` unless the SQL names one. ``policy`` says
    what the statement may reach (checked on the engine's parse of it before it runs);
    ``query_id`` names it so that it can be cancelled."""

    sql: str | bytes
    fmt: str = "TabSeparated"
    data: bytes | None = None
    params: Mapping[str, str] = field(default_factory=dict)
    settings: Mapping[str, str] = field(default_factory=dict)  # name -> SQL literal
    database: str = DEFAULT_DATABASE
    readonly: bool = False
    policy: Policy | None = None
    user: str = "default"
    query_id: str = ""
    deadline_s: float | None = None  # the endpoint kills the query after this long
    external: tuple[External, ...] = ()  # temporary tables for this query only


@dataclass(frozen=True)
class Outcome:
    body: bytes
    read_rows: int = 0
    read_bytes: int = 0
    written_rows: int = 0
    written_bytes: int = 0
    elapsed_s: float = 0.0


@dataclass
class Handle:
    """One engine handle (a chDB connection: its own settings, database, temporary tables)."""

    conn: Any
    applied: dict[str, str] = field(default_factory=dict)
    database: str = DEFAULT_DATABASE


class Engine:
    """Owns the data directory. ``open`` before use, ``close`` after.

    Writers and readers have separate handles (and threads), so a write never waits for a
    read; a session gets a handle of its own (``new_handle``). A query whose caller goes away,
    or that outlives its deadline, is killed in the engine through a control handle."""

    def __init__(self, path: str | Path, writers: int = 4, readers: int = 4,
                 max_sessions: int = 256) -> None:
        self.path = Path(path).resolve()
        self.user_files = self.path / "user_files"
        self._sizes = (writers, readers)
        self._writers: asyncio.Queue[Handle] = asyncio.Queue()
        self._readers: asyncio.Queue[Handle] = asyncio.Queue()
        self._all: list[Handle] = []
        self._control: Handle | None = None
        self._pool = ThreadPoolExecutor(max_workers=writers + readers + max_sessions,
                                        thread_name_prefix="chdb")
        self._kill_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chdb-kill")
        self.version = ""
        self.table_functions: frozenset[str] = frozenset()
        self.engines: frozenset[str] = frozenset()

    def open(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        self.user_files.mkdir(exist_ok=True)
        writers, readers = self._sizes
        for i in range(writers + readers):
            handle = self.new_handle(readonly=i >= writers)
            self._all.append(handle)
            (self._writers if i < writers else self._readers).put_nowait(handle)
        self._control = self.new_handle(readonly=False)
        conn = self._control.conn
        self.version = conn.query("SELECT version()", "TabSeparated").bytes().decode().strip()
        self.table_functions = _names(conn, "system.table_functions")
        self.engines = _names(conn, "system.table_engines")
        log.info("engine %s open on %s (%d writer, %d reader handles)",
                 self.version, self.path, writers, readers)

    def new_handle(self, *, readonly: bool) -> Handle:
        """A fresh handle; a read-only one is at ``readonly = 2`` (query-level settings may
        change, ``readonly`` itself never; writes and DDL are refused by the engine)."""
        handle = Handle(chdb.connect(f"file:{self.path}"))  # type: ignore[no-untyped-call]
        if readonly:
            handle.conn.query("SET readonly = 2", "TabSeparated")
        return handle

    def close_handle(self, handle: Handle) -> None:
        with contextlib.suppress(Exception):
            handle.conn.close()

    def policy(self, *, files: bool, dictionaries: bool) -> Policy:
        return Policy(files, dictionaries, self.table_functions, self.engines)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self._kill_pool.shutdown(wait=True)
        for handle in [*self._all, *([self._control] if self._control else [])]:
            self.close_handle(handle)
        self._all.clear()

    async def run(self, call: Call, handle: Handle | None = None) -> Outcome:
        """Run ``call`` on ``handle`` (a session's) or on a pooled one."""
        for name in call.settings:  # names are interpolated into SET: only identifiers pass
            if not setting_name_ok(name):
                raise ClickHouseError(UNKNOWN_SETTING, f"DB::Exception: Unknown setting '{name}'")
        if handle is not None:
            return await self._on(handle, call)
        pool = self._readers if call.readonly else self._writers
        pooled = await pool.get()
        try:
            return await self._on(pooled, call)
        finally:
            pool.put_nowait(pooled)

    async def _on(self, handle: Handle, call: Call) -> Outcome:
        loop = asyncio.get_running_loop()
        work = loop.run_in_executor(self._pool, _run, handle, call)
        try:
            return await asyncio.wait_for(asyncio.shield(work), call.deadline_s)
        except TimeoutError:
            await self._kill(call.query_id, work)
            raise ClickHouseError(TIMEOUT_EXCEEDED, "DB::Exception: Timeout exceeded: "
                                  f"elapsed {call.deadline_s} s, the longest a query of "
                                  f"{call.user} may run") from None
        except asyncio.CancelledError:  # the client went away: stop its query in the engine
            await self._kill(call.query_id, work)
            raise

    async def _kill(self, query_id: str, work: asyncio.Future[Outcome]) -> None:
        loop = asyncio.get_running_loop()
        if query_id and self._control is not None:
            await loop.run_in_executor(self._kill_pool, _kill, self._control, query_id)
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(asyncio.shield(work), 30)  # the handle is free again after


def _names(conn: Any, table: str) -> frozenset[str]:
    text = conn.query(f"SELECT lower(name) FROM {table}", "TabSeparated").bytes().decode()
    return frozenset(text.split())


def _kill(control: Handle, query_id: str) -> None:
    with contextlib.suppress(Exception):
        control.conn.query(f"KILL QUERY WHERE Settings['log_comment'] = {quote_literal(query_id)}"
                           " SYNC", "TabSeparated")


def _run(handle: Handle, call: Call) -> Outcome:
    try:
        _prepare(handle, call)
        if call.policy is not None:
            _guard(handle, call, call.policy)
        if call.data is not None:
            return _insert(handle, call)
        with _external_tables(handle, call):
            result = handle.conn.query(call.sql, call.fmt, params=dict(call.params))
        return Outcome(bytes(result.bytes() or b""), result.rows_read(), result.bytes_read(),
                       result.rows_written(), result.bytes_written(), result.elapsed())
    except ClickHouseError:
        raise
    except Exception as e:  # chDB raises ChdbError or RuntimeError with ClickHouse's text
        raise from_engine(str(e)) from None


@contextlib.contextmanager
def _external_tables(handle: Handle, call: Call) -> Iterator[None]:
    """The call's external data as temporary tables on its handle, dropped afterwards."""
    made: list[str] = []
    try:
        for ext in call.external:
            name = quote_identifier(ext.name)
            create = f"CREATE TEMPORARY TABLE {name} ({ext.structure}) ENGINE = Memory"
            if call.policy is not None:
                _guard(handle, replace(call, sql=create, data=None, params={}), call.policy)
            handle.conn.query(create, "TabSeparated")
            made.append(name)
            inserter = handle.conn.send_insert(f"INSERT INTO {name}", ext.fmt)
            try:
                inserter.append(ext.data)
                inserter.finish()
            except BaseException:
                inserter.cancel()
                raise
        yield
    finally:
        for name in made:
            with contextlib.suppress(Exception):
                handle.conn.query(f"DROP TEMPORARY TABLE IF EXISTS {name}", "TabSeparated")


def _guard(handle: Handle, call: Call, policy: Policy) -> None:
    """Refuse a text that holds more than one statement (the engine would run them all), then
    anything the statement reaches that ``policy`` forbids, on the engine's own parse."""
    sql = call.sql.decode(errors="replace") if isinstance(call.sql, bytes) else call.sql
    if call.data is not None:  # the statement of an INSERT whose data comes separately
        sql = f"{sql} FORMAT {call.fmt}"
    if len(split_statements(sql)) > 1:
        raise ClickHouseError(SYNTAX_ERROR, "DB::Exception: Multi-statements are not allowed")
    try:
        handle.conn.query(f"SELECT formatQuery({quote_literal(sql)})", "TabSeparated")
    except Exception as e:  # the statement's own parse error, without the probe around it
        error = from_engine(str(e))
        error.message = _PROBE.sub(".", error.message)
        raise error from None
    tree = handle.conn.query("EXPLAIN AST " + sql, "TabSeparated", params=dict(call.params))
    refusal = check(parse_tree(tree.bytes().decode(errors="replace")), policy, call.user)
    if refusal is not None:
        raise refusal


def _insert(handle: Handle, call: Call) -> Outcome:
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


def _prepare(handle: Handle, call: Call) -> None:
    """Bring the handle's settings and database to what the call needs (``log_comment``
    carries the query id, by which a query is found to be killed)."""
    if call.query_id:
        tag = {"log_comment": quote_literal(call.query_id)}
        call = replace(call, settings={**call.settings, **tag})
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


def _reset(handle: Handle, also: set[str]) -> None:
    """After a failed SET the handle's state is unknown: put every touched setting back."""
    for name in set(handle.applied) | also:
        with contextlib.suppress(Exception):
            handle.conn.query(f"SET {name} = DEFAULT", "TabSeparated")
    handle.applied = {}

