"""The ClickHouse HTTP interface over the embedded engine: one request, one statement."""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from aiohttp import web

from gpufleet.ops import Metrics
from services.warehouse.auth import User, authenticate, credentials
from services.warehouse.core import (
    WRITE_KINDS,
    SqlTextError,
    first_keyword,
    parse_set,
    parse_use,
    split_insert,
    trailing_format,
)
from services.warehouse.engine import DEFAULT_DATABASE, Call, Engine, Outcome
from services.warehouse.errors import SYNTAX_ERROR, UNKNOWN_EXCEPTION, ClickHouseError, readonly
from services.warehouse.request import Ask, read_ask
from services.warehouse.sessions import Session, Sessions
from services.warehouse.wire import content_type, encode_body, response_encoding

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Context:
    """What the handler needs, built once by the application factory."""

    engine: Engine
    users: Mapping[str, User]
    sessions: Sessions
    metrics: Metrics


async def handle(ctx: Context, request: web.Request) -> web.StreamResponse:
    query_id = request.query.get("query_id") or str(uuid.uuid4())
    started = time.perf_counter()
    try:
        try:
            user = authenticate(ctx.users, *credentials(request.headers, request.query))
            ask = await read_ask(request)
            if not ask.text.strip() and request.method == "GET":
                return web.Response(text="Ok.\n")
            fmt, outcome = await _execute(ctx, user, ask, request)
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
    ctx.metrics.observe("warehouse_request_seconds", time.perf_counter() - started,
                        help="time to answer a request")
    ctx.metrics.inc("warehouse_rows_written_total", outcome.written_rows,
                    help="rows inserted through the endpoint")
    return _respond(ctx, request, query_id, fmt, outcome)


async def _execute(ctx: Context, user: User, ask: Ask, request: web.Request,
                   ) -> tuple[str, Outcome]:
    session = _session(ctx, user, ask)
    settings = {**(session.settings if session else {}), **ask.settings}
    ro = user.readonly or ask.read_only_method
    wanted_ro = settings.pop("readonly", None)
    if wanted_ro is not None and wanted_ro.strip("'") not in ("0", ""):
        ro = True
    elif wanted_ro is not None and ro:
        raise readonly(user.name, "Cannot modify 'readonly' setting in readonly mode")
    if user.readonly and ask.settings.keys() - {"readonly"}:
        name = sorted(ask.settings.keys() - {"readonly"})[0]
        raise readonly(user.name, f"Cannot modify '{name}' setting in readonly mode")
    database = (ask.params.get("database") or request.headers.get("X-ClickHouse-Database")
                or (session.database if session else None) or DEFAULT_DATABASE)
    kind = first_keyword(ask.text)
    if not kind:
        raise ClickHouseError(SYNTAX_ERROR, "DB::Exception: Empty query")
    if kind in ("SET", "USE"):
        return "TabSeparated", await _session_change(ctx, user, session, ask, settings, database)
    if ro and kind in WRITE_KINDS:
        raise readonly(user.name)
    default_fmt = (request.headers.get("X-ClickHouse-Format") or ask.params.get("default_format")
                   or "TabSeparated")
    inline = split_insert(ask.text)
    if inline is not None:
        call = Call(inline.statement, inline.fmt, inline.data, ask.query_params, settings,
                    database, ro)
        return default_fmt, await ctx.engine.run(call)
    fmt = trailing_format(ask.text.decode(errors="replace")) or default_fmt
    call = Call(ask.text, default_fmt, None, ask.query_params, settings, database, ro)
    return fmt, await ctx.engine.run(call)


def _session(ctx: Context, user: User, ask: Ask) -> Session | None:
    session_id = ask.params.get("session_id")
    if not session_id:
        return None
    timeout = ask.params.get("session_timeout")
    return ctx.sessions.get(user.name, session_id,
                            must_exist=ask.params.get("session_check") in ("1", "true"),
                            timeout_s=float(timeout) if timeout else None)


async def _session_change(ctx: Context, user: User, session: Session | None, ask: Ask,
                          settings: dict[str, str], database: str) -> Outcome:
    """SET and USE change the session (none: they last one request, as in ClickHouse).
    The engine checks the new state by running a trivial query in it first."""
    text = ask.text.decode(errors="replace")
    try:
        if first_keyword(text) == "SET":
            if user.readonly:
                raise readonly(user.name, "Cannot modify settings in readonly mode")
            changes = parse_set(text)
            probe = {k: v for k, v in {**settings, **changes}.items() if k != "readonly"}
            await ctx.engine.run(Call("SELECT 1", settings=probe, database=database))
            if session is not None:
                session.settings.update(changes)
        else:
            database = parse_use(text)
            await ctx.engine.run(Call("SELECT 1", database=database, readonly=True))
            if session is not None:
                session.database = database
    except SqlTextError as e:
        raise ClickHouseError(SYNTAX_ERROR, f"DB::Exception: {e}") from None
    return Outcome(b"")


def _respond(ctx: Context, request: web.Request, query_id: str, fmt: str,
             outcome: Outcome) -> web.Response:
    encoding = response_encoding(request.headers.get("Accept-Encoding", ""))
    summary = {"read_rows": str(outcome.read_rows), "read_bytes": str(outcome.read_bytes),
               "written_rows": str(outcome.written_rows),
               "written_bytes": str(outcome.written_bytes),
               "elapsed_ns": str(int(outcome.elapsed_s * 1e9))}
    headers = {
        "Content-Type": content_type(fmt), "X-ClickHouse-Format": fmt,
        "X-ClickHouse-Query-Id": query_id, "X-ClickHouse-Timezone": "UTC",
        "X-ClickHouse-Server-Display-Name": "gpufleet-warehouse",
        "X-ClickHouse-Summary": json.dumps(summary, separators=(",", ":")),
    }
    body = outcome.body
    if encoding and body:
        body = encode_body(body, encoding)
        headers["Content-Encoding"] = encoding
    return web.Response(body=body, headers=headers)
