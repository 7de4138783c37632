"""The ClickHouse HTTP interface over the embedded engine: one request, one statement."""

from __future__ import annotations

import contextlib
import json
import logging
import re
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace

from aiohttp import web

from gpufleet.ops import Metrics
from services.warehouse import framing, native
from services.warehouse.auth import User, authenticate, credentials
from services.warehouse.engine import DEFAULT_DATABASE, Call, Engine, Outcome
from services.warehouse.errors import (
    ACCESS_DENIED,
    BAD_ARGUMENTS,
    SESSION_NOT_FOUND,
    SETTING_CONSTRAINT_VIOLATION,
    SYNTAX_ERROR,
    TOO_MANY_SIMULTANEOUS_QUERIES,
    UNKNOWN_EXCEPTION,
    ClickHouseError,
    readonly,
)
from services.warehouse.guard import FILE_SETTINGS
from services.warehouse.request import QueryRequest, read_query_request, response_framing
from services.warehouse.sessions import Session, Sessions, busy
from services.warehouse.sqltext import (
    WRITE_KINDS,
    SqlTextError,
    first_keyword,
    parse_set,
    parse_use,
    split_insert,
    trailing_format,
    with_current_user,
)
from services.warehouse.wire import content_type, encode_body, response_encoding

log = logging.getLogger(__name__)
_TEMPORARY = re.compile(rb"\s*CREATE\s+(OR\s+REPLACE\s+)?TEMPORARY\b", re.IGNORECASE)


@dataclass(frozen=True)
class Limits:
    """The analyst's limits (a ClickHouse server sets them in the user's profile)."""

    analyst_queries: int = 2
    analyst_max_execution_time_s: float = 60.0


@dataclass
class Context:
    """What the handler needs, built once by the application factory."""

    engine: Engine
    users: Mapping[str, User]
    sessions: Sessions
    metrics: Metrics
    limits: Limits = field(default_factory=Limits)
    running: dict[str, int] = field(default_factory=dict)  # user -> queries running now


async def handle(ctx: Context, request: web.Request) -> web.StreamResponse:
    query_id = request.query.get("query_id") or str(uuid.uuid4())
    started = time.perf_counter()
    try:
        try:
            user = authenticate(ctx.users, *credentials(request.headers, request.query))
            query = await read_query_request(request)
            if not query.text.strip() and request.method == "GET":
                return web.Response(text="Ok.\n")
            with _slot(ctx, user):
                fmt, outcome = await _execute(ctx, user, query, request, query_id)
        except (ValueError, UnicodeError, OSError) as e:  # a bug or a bad request: say which
            log.exception("query %s: unexpected error", query_id)
            raise ClickHouseError(UNKNOWN_EXCEPTION, f"DB::Exception: {e!r}") from e
    except ClickHouseError as e:
        ctx.metrics.inc("warehouse_errors_total", help="requests answered with an error",
                        code=str(e.code))
        log.debug("query %s failed: %s", query_id, e.message)
        return web.Response(status=e.status, text=e.body(ctx.engine.version), headers={
            "X-ClickHouse-Exception-Code": str(e.code), "X-ClickHouse-Query-Id": query_id,
            "X-ClickHouse-Server-Display-Name": "gpufleet-warehouse"})
    elapsed = time.perf_counter() - started
    ctx.metrics.observe("warehouse_request_seconds", elapsed, help="time to answer a request")
    ctx.metrics.inc("warehouse_rows_written_total", outcome.written_rows,
                    help="rows inserted through the endpoint")
    return _respond(request, query, query_id, fmt, outcome, elapsed)


@contextlib.contextmanager
def _slot(ctx: Context, user: User) -> Iterator[None]:
    """Count the user's running queries; the analyst gets at most ``analyst_queries``."""
    running = ctx.running.get(user.name, 0)
    if user.readonly and running >= ctx.limits.analyst_queries:
        raise ClickHouseError(TOO_MANY_SIMULTANEOUS_QUERIES, "DB::Exception: Too many "
                              f"simultaneous queries for user {user.name}. Maximum: "
                              f"{ctx.limits.analyst_queries}")
    ctx.running[user.name] = running + 1
    try:
        yield
    finally:
        ctx.running[user.name] -= 1


def _check_settings(ctx: Context, user: User, changes: Mapping[str, str]) -> None:
    """Settings a user may not change: ``readonly`` for a read-only user (as ClickHouse's
    ``readonly = 2``), the ones that name files for everyone, and the analyst's time limit
    only within its cap."""
    for name, value in changes.items():
        plain = value.strip("'")
        if name in FILE_SETTINGS:
            raise ClickHouseError(ACCESS_DENIED, f"DB::Exception: {user.name}: Not enough "
                                  f"privileges: setting {name} names files on the server")
        if user.readonly and name == "readonly" and plain != "2":
            raise readonly(user.name, "Cannot modify 'readonly' setting in readonly mode")
        if user.readonly and name == "max_execution_time":
            cap = ctx.limits.analyst_max_execution_time_s
            try:
                ok = 0 < float(plain) <= cap
            except ValueError:
                ok = False
            if not ok:
                raise ClickHouseError(SETTING_CONSTRAINT_VIOLATION, "DB::Exception: Setting "
                                      f"max_execution_time shouldn't be greater than {cap:g} "
                                      f"or 0 for user {user.name}, got {plain}")


async def _execute(ctx: Context, user: User, query: QueryRequest, request: web.Request,
                   query_id: str) -> tuple[str, Outcome]:
    _check_settings(ctx, user, query.settings)
    session = _session(ctx, user, query)
    settings = {**(session.settings if session else {}), **query.settings}
    ro = user.readonly or query.read_only_method
    wanted_ro = settings.pop("readonly", None)
    if wanted_ro is not None and wanted_ro.strip("'") not in ("0", ""):
        ro = True
    elif wanted_ro is not None and ro:
        raise readonly(user.name, "Cannot modify 'readonly' setting in readonly mode")
    deadline = None
    if user.readonly:
        cap = ctx.limits.analyst_max_execution_time_s
        settings.setdefault("max_execution_time", f"'{cap:g}'")
        deadline = cap + 5.0  # the engine stops it first; this catches what it does not
    database = (query.params.get("database") or request.headers.get("X-ClickHouse-Database")
                or (session.database if session else None) or DEFAULT_DATABASE)
    kind = first_keyword(query.text)
    if not kind:
        raise ClickHouseError(SYNTAX_ERROR, "DB::Exception: Empty query")
    if kind in ("SET", "USE"):
        return "TabSeparated", await _session_change(ctx, user, session, query, settings, database)
    if ro and kind in WRITE_KINDS:
        raise readonly(user.name)
    if session is None and kind == "CREATE" and _TEMPORARY.match(query.text):
        raise ClickHouseError(SESSION_NOT_FOUND, "DB::Exception: A temporary table lives in a "
                              "session: send session_id with the query")
    text = query.text
    default_fmt = (request.headers.get("X-ClickHouse-Format") or query.params.get("default_format")
                   or "TabSeparated")
    policy = ctx.engine.policy(files=not user.readonly, dictionaries=not user.readonly)
    common = {"params": query.query_params, "settings": settings, "database": database,
              "readonly": ro, "policy": policy, "user": user.name, "query_id": query_id,
              "deadline_s": deadline, "external": query.external}
    revision = _revision(query.params)
    inline = split_insert(text)
    if inline is not None:
        inline = replace(inline, statement=_as_user(inline.statement.encode(), user).decode())
        # Native input is revision 0 whatever client_protocol_version says, as on a server
        call = Call(inline.statement, inline.fmt, inline.data, **common)  # type: ignore[arg-type]
        return default_fmt, await _run(ctx, call, session, query)
    text = _as_user(text, user)
    fmt = trailing_format(text.decode(errors="replace")) or default_fmt
    call = Call(text, default_fmt, None, **common)  # type: ignore[arg-type]
    outcome = await _run(ctx, call, session, query)
    if fmt == "Native" and revision > 0:
        outcome = replace(outcome, body=native.to_client(outcome.body, revision))
    return fmt, outcome


def _as_user(statement: bytes, user: User) -> bytes:
    """The statement with currentUser() as ``user`` (the engine's own user is ``default``);
    an INSERT's data is never touched."""
    if user.name == "default" or b"user" not in statement.lower():
        return statement
    return with_current_user(statement, user.name)


def _revision(params: Mapping[str, str]) -> int:
    """The client's protocol revision (``client_protocol_version``); 0 when not given."""
    value = params.get("client_protocol_version", "0") or "0"
    try:
        return max(0, int(value))
    except ValueError:
        raise ClickHouseError(BAD_ARGUMENTS, "DB::Exception: client_protocol_version must be "
                              f"a number, got {value!r}") from None


async def _run(ctx: Context, call: Call, session: Session | None, query: QueryRequest) -> Outcome:
    if session is None:
        return await ctx.engine.run(call)
    if session.lock.locked():
        raise busy(query.params.get("session_id", ""))
    async with session.lock:
        return await ctx.engine.run(call, session.handle)


def _session(ctx: Context, user: User, query: QueryRequest) -> Session | None:
    session_id = query.params.get("session_id")
    if not session_id:
        return None
    timeout = query.params.get("session_timeout")
    try:
        timeout_s = float(timeout) if timeout else None
    except ValueError:
        raise ClickHouseError(BAD_ARGUMENTS, f"DB::Exception: Invalid session timeout: "
                              f"'{timeout}'") from None
    return ctx.sessions.get(user.name, session_id, readonly=user.readonly,
                            must_exist=query.params.get("session_check") in ("1", "true"),
                            timeout_s=timeout_s)


async def _session_change(ctx: Context, user: User, session: Session | None, query: QueryRequest,
                          settings: dict[str, str], database: str) -> Outcome:
    """SET and USE change the session (none: they last one request, as in ClickHouse).
    The engine checks the new state by running a trivial query in it first."""
    text = query.text.decode(errors="replace")
    try:
        if first_keyword(text) == "SET":
            changes = parse_set(text)
            _check_settings(ctx, user, changes)
            probe = {k: v for k, v in {**settings, **changes}.items() if k != "readonly"}
            await ctx.engine.run(Call("SELECT 1", settings=probe, database=database,
                                      readonly=user.readonly))
            if session is not None:
                session.settings.update({k: v for k, v in changes.items() if k != "readonly"})
        else:
            database = parse_use(text)
            await ctx.engine.run(Call("SELECT 1", database=database, readonly=True))
            if session is not None:
                session.database = database
    except SqlTextError as e:
        raise ClickHouseError(SYNTAX_ERROR, f"DB::Exception: {e}") from None
    return Outcome(b"")


def _respond(request: web.Request, query: QueryRequest, query_id: str, fmt: str, outcome: Outcome,
             elapsed_s: float) -> web.Response:
    encoding = response_encoding(request.headers.get("Accept-Encoding", ""))
    summary = {"read_rows": str(outcome.read_rows), "read_bytes": str(outcome.read_bytes),
               "written_rows": str(outcome.written_rows),
               "written_bytes": str(outcome.written_bytes),
               "elapsed_ns": str(int(elapsed_s * 1e9))}
    headers = {
        "Content-Type": content_type(fmt), "X-ClickHouse-Format": fmt,
        "X-ClickHouse-Query-Id": query_id, "X-ClickHouse-Timezone": "UTC",
        "X-ClickHouse-Server-Display-Name": "gpufleet-warehouse",
        "X-ClickHouse-Summary": json.dumps(summary, separators=(",", ":")),
    }
    body = outcome.body
    framed = response_framing(query.params)
    if framed is not None and body:  # compress=1: ClickHouse's block framing, then HTTP's
        body = framing.compress(body, *framed)
    if encoding and body:
        body = encode_body(body, encoding)
        headers["Content-Encoding"] = encoding
    return web.Response(body=body, headers=headers)
