"""What an HTTP request asks of the warehouse, read the way ClickHouse's HTTP interface reads it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from aiohttp import web

from services.warehouse import framing
from services.warehouse.errors import BAD_ARGUMENTS, CANNOT_PARSE_INPUT, ClickHouseError
from services.warehouse.sqltext import quote_literal, setting_name_ok, split_top_level
from services.warehouse.wire import decode_body

# Parameters the HTTP interface consumes itself; every other one (but param_*) is a setting.
TRANSPORT = frozenset({
    "query", "user", "password", "database", "default_format", "session_id", "session_timeout",
    "session_check", "query_id", "quota_key", "buffer_size", "wait_end_of_query", "compress",
    "decompress", "client_protocol_version", "role", "send_progress_in_http_headers",
    "http_headers_progress_interval_ms", "enable_http_compression", "http_zlib_compression_level",
    "http_native_compression_disable_checksumming_on_decompress", "add_http_cors_header",
})
_FORM = "multipart/form-data"  # as ClickHouse: a urlencoded body is SQL, not a form


@dataclass(frozen=True)
class External:
    """External data: a file part of a multipart request, a temporary table for one query."""

    name: str
    structure: str  # "a UInt8, b String"
    fmt: str
    data: bytes


@dataclass(frozen=True)
class QueryRequest:
    """What one HTTP request asks the engine to run: the statement, its settings and data."""

    params: Mapping[str, str]
    text: bytes  # the query parameter, a newline, then the body (ClickHouse concatenates them)
    settings: Mapping[str, str]  # setting name -> SQL literal, from the parameters
    query_params: Mapping[str, str]  # {name: value} for {name:Type} placeholders
    read_only_method: bool  # GET: ClickHouse runs it read-only
    external: tuple[External, ...] = ()  # temporary tables sent with the query


async def read_query_request(request: web.Request) -> QueryRequest:
    params = {k: v for k, v in request.query.items()}
    external: tuple[External, ...] = ()
    if request.content_type == _FORM and request.method == "POST":
        try:
            form = await request.post()
        except ValueError as e:
            raise ClickHouseError(CANNOT_PARSE_INPUT, f"DB::Exception: Bad form: {e}") from None
        params.update({k: v for k, v in form.items() if isinstance(v, str)})
        files = {k: v.file.read() for k, v in form.items() if isinstance(v, web.FileField)}
        external = tuple(_external(name, data, params) for name, data in files.items())
        body = b""
    else:
        body = await request.read()
    body = decode_body(body, request.headers.get("Content-Encoding", ""))
    if _on(params.get("decompress")):  # the body is in ClickHouse's compressed-block framing
        verify = not _on(params.get("http_native_compression_disable_checksumming_on_decompress"))
        body = framing.decompress(body, verify=verify)
    query = params.get("query", "").encode()
    text = query + b"\n" + body if query and body else query or body
    external_keys = {f"{e.name}_{kind}" for e in external
                     for kind in ("structure", "types", "format")}
    settings = {k: quote_literal(v) for k, v in params.items()
                if k not in TRANSPORT and k not in external_keys and not k.startswith("param_")}
    query_params = {k[6:]: v for k, v in params.items() if k.startswith("param_")}
    return QueryRequest(params, text, settings, query_params, request.method in ("GET", "HEAD"),
               external)


def _external(name: str, data: bytes, params: Mapping[str, str]) -> External:
    """The table named by a file part, with ``NAME_structure`` or ``NAME_types`` and
    ``NAME_format`` (TabSeparated by default), as ClickHouse reads external data."""
    fmt = params.get(f"{name}_format", "TabSeparated")
    if not setting_name_ok(name) or not setting_name_ok(fmt):
        raise ClickHouseError(BAD_ARGUMENTS, f"DB::Exception: Bad external table {name!r} "
                              f"or format {fmt!r}")
    structure = params.get(f"{name}_structure")
    if structure is None and f"{name}_types" in params:
        types = [t.strip() for t in split_top_level(params[f"{name}_types"], ",")]
        structure = ", ".join(f"_{i} {t}" for i, t in enumerate(types, 1))
    if not structure or not _balanced(structure):
        raise ClickHouseError(BAD_ARGUMENTS, f"DB::Exception: External table {name} needs "
                              f"{name}_structure ('a UInt8, b String') or {name}_types")
    return External(name, structure, fmt, data)


def _balanced(text: str) -> bool:
    """Outside its quoted strings: parentheses that never close more than they open and end
    closed, no comment and no statement end. The structure stays inside the column list."""
    if "\\" in text or text.count("'") % 2:
        return False
    bare = "".join(part for i, part in enumerate(text.split("'")) if i % 2 == 0)
    depth = 0
    for c in bare:
        depth += (c == "(") - (c == ")")
        if depth < 0 or c in ";`\"#/-":
            return False
    return depth == 0


def _on(value: str | None) -> bool:
    return value is not None and value.strip().lower() in ("1", "true")


def response_framing(params: Mapping[str, str]) -> tuple[int, int] | None:
    """(method byte, ZSTD level) when the response is to be framed (``compress=1``)."""
    if not _on(params.get("compress")):
        return None
    level = params.get("network_zstd_compression_level", "1")
    try:
        zstd_level = int(level)
    except ValueError:
        raise ClickHouseError(BAD_ARGUMENTS, "DB::Exception: Bad network_zstd_compression_level:"
                              f" {level}") from None
    return framing.method_of(params.get("network_compression_method", "LZ4")), zstd_level
