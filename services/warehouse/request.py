"""What an HTTP request asks of the warehouse, read the way ClickHouse's HTTP interface reads it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from aiohttp import web

from services.warehouse import framing
from services.warehouse.core import quote_literal
from services.warehouse.errors import CANNOT_PARSE_INPUT, ClickHouseError
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
class Ask:
    params: Mapping[str, str]
    text: bytes  # the query parameter, a newline, then the body (ClickHouse concatenates them)
    settings: Mapping[str, str]  # setting name -> SQL literal, from the parameters
    query_params: Mapping[str, str]  # {name: value} for {name:Type} placeholders
    read_only_method: bool  # GET: ClickHouse runs it read-only


async def read_ask(request: web.Request) -> Ask:
    params = {k: v for k, v in request.query.items()}
    if request.content_type == _FORM and request.method == "POST":
        try:
            form = await request.post()
        except ValueError as e:
            raise ClickHouseError(CANNOT_PARSE_INPUT, f"DB::Exception: Bad form: {e}") from None
        params.update({k: v for k, v in form.items() if isinstance(v, str)})
        body = b""
    else:
        body = await request.read()
    body = decode_body(body, request.headers.get("Content-Encoding", ""))
    if _on(params.get("decompress")):  # the body is in ClickHouse's compressed-block framing
        verify = not _on(params.get("http_native_compression_disable_checksumming_on_decompress"))
        body = framing.decompress(body, verify=verify)
    query = params.get("query", "").encode()
    text = query + b"\n" + body if query and body else query or body
    settings = {k: quote_literal(v) for k, v in params.items()
                if k not in TRANSPORT and not k.startswith("param_")}
    query_params = {k[6:]: v for k, v in params.items() if k.startswith("param_")}
    return Ask(params, text, settings, query_params, request.method in ("GET", "HEAD"))


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
        raise ClickHouseError(36, f"DB::Exception: Bad network_zstd_compression_level: {level}"
                              ) from None  # BAD_ARGUMENTS
    return framing.method_of(params.get("network_compression_method", "LZ4")), zstd_level
