"""What every handler shares: the route table, typed app state, JSON in and out, errors."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import msgspec
from aiohttp import web
from aiokafka import AIOKafkaProducer

from gpufleet.contracts import invalid_field
from gpufleet.ops import Metrics
from services.api.auth import Authenticator, Principal, Role
from services.api.config import ApiSettings
from services.api.history import Warehouse
from services.api.schemas import Error
from services.api.state import LiveState

log = logging.getLogger(__name__)
T = TypeVar("T")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

SETTINGS = web.AppKey("settings", ApiSettings)
STATE = web.AppKey("state", LiveState)
AUTH = web.AppKey("auth", Authenticator)
METRICS = web.AppKey("metrics", Metrics)
PRODUCER = web.AppKey("producer", AIOKafkaProducer)
WAREHOUSE = web.AppKey("warehouse", Warehouse)
QUOTAS = web.AppKey("quotas", dict[str, float])
LIVE_READY = web.AppKey("live_ready", asyncio.Event)
STOPPING = web.AppKey("stopping", asyncio.Event)
DIED = web.AppKey("died", asyncio.Event)  # a background task ended: the process must stop
PRINCIPAL = web.RequestKey("principal", Principal)

_encoder = msgspec.json.Encoder()


class ViewCache:
    """Views of the live state, computed once per state version and at most ``max_age_s`` old
    (so ages in them stay true when the fleet goes quiet)."""

    def __init__(self, max_age_s: float = 1.0) -> None:
        self._max_age = max_age_s
        self._views: dict[str, tuple[int, float, Any]] = {}

    def get(self, name: str, version: int, compute: Callable[[], T]) -> T:
        now = time.monotonic()
        hit = self._views.get(name)
        if hit is not None and hit[0] == version and now - hit[1] < self._max_age:
            value: T = hit[2]
            return value
        value = compute()
        self._views[name] = (version, now, value)
        return value


VIEWS = web.AppKey("views", ViewCache)


@dataclass(frozen=True)
class Route:
    """One operation: served by the app and described by the OpenAPI spec from the same row."""

    method: str
    path: str
    handler: Handler
    summary: str
    role: Role = Role.VIEWER
    query: type | None = None  # a Struct of the query parameters
    path_params: type | None = None  # a Struct of the path parameters, with their bounds
    body: type | None = None  # a Struct of the request body
    response: type | None = None  # a Struct of the 2xx body; None: not JSON
    status: int = 200
    errors: tuple[int, ...] = field(default=(400, 401, 403))
    content_type: str = "application/json"
    tag: str = "fleet"
    # A stream of server-sent events: event name -> the Struct its ``data`` holds, as JSON.
    events: tuple[tuple[str, type], ...] = ()


def json(value: Any, status: int = 200) -> web.Response:
    return web.Response(body=_encoder.encode(value), status=status,
                        content_type="application/json")


def error(status: int, message: str, field_name: str | None = None) -> web.HTTPException:
    cls = {400: web.HTTPBadRequest, 401: web.HTTPUnauthorized, 403: web.HTTPForbidden,
           404: web.HTTPNotFound, 409: web.HTTPConflict, 413: web.HTTPRequestEntityTooLarge,
           503: web.HTTPServiceUnavailable}[status]
    body = _encoder.encode(Error(error=message, field=field_name)).decode()
    if status == 413:
        return web.HTTPRequestEntityTooLarge(max_size=0, actual_size=0, text=body,
                                             content_type="application/json")
    headers = {"WWW-Authenticate": 'Bearer realm="gpufleet"'} if status == 401 else None
    exc: web.HTTPException = cls(text=body, content_type="application/json", headers=headers)
    return exc


def unavailable(message: str, retry_after_s: int) -> web.HTTPException:
    """503 with ``Retry-After``: a backend is away for now; the same request may be sent again."""
    body = _encoder.encode(Error(error=message)).decode()
    return web.HTTPServiceUnavailable(text=body, content_type="application/json",
                                      headers={"Retry-After": str(retry_after_s)})


def _field_of(e: msgspec.ValidationError) -> str | None:
    return invalid_field(str(e))[1]  # "Expected `int`, got `str` - at `$.gpus`" -> "gpus"


async def read_body(request: web.Request, cls: type[T]) -> T:
    """The request body decoded as ``cls``, or a 400 naming the field (413 when too big)."""
    raw = await request.read()
    try:
        return msgspec.convert(_whole_numbers(msgspec.json.decode(raw or b"{}")), type=cls)
    except msgspec.ValidationError as e:
        raise error(400, str(e), _field_of(e)) from None
    except msgspec.DecodeError as e:
        raise error(400, f"body is not valid JSON: {e}") from None


def _whole_numbers(value: Any) -> Any:
    """JSON numbers without a fraction as ints: JSON Schema, and so the OpenAPI document, counts
    ``20.0`` as an integer (msgspec alone would refuse it for an ``int`` field)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_whole_numbers(v) for v in value]
    if isinstance(value, dict):
        return {k: _whole_numbers(v) for k, v in value.items()}
    return value


def read_query(request: web.Request, cls: type[T]) -> T:
    """The query string converted to ``cls`` (numbers and booleans from text)."""
    values: dict[str, Any] = {}
    for key in request.query:
        items = request.query.getall(key)
        values[key] = items if len(items) > 1 else items[0]
    try:
        return msgspec.convert(values, type=cls, strict=False)
    except msgspec.ValidationError as e:
        raise error(400, str(e), _field_of(e)) from None


def principal(request: web.Request) -> Principal:
    who: Principal = request[PRINCIPAL]
    return who


def make_auth_middleware(routes: dict[tuple[str, str], Route]) -> Any:
    @web.middleware
    async def auth(request: web.Request, handler: Handler) -> web.StreamResponse:
        info = request.match_info.route.resource
        canonical = info.canonical if info is not None else ""
        route = routes.get((request.method, canonical))
        if route is None:
            return await handler(request)
        who, presented = request.app[AUTH].identify(request.headers.get("Authorization"))
        if who is None:
            raise error(401, "a valid bearer token is needed" if presented else
                        "authentication required: send Authorization: Bearer <token>")
        if who.role < route.role:
            raise error(403, f"role {who.role.name.lower()} may not do this")
        request[PRINCIPAL] = who
        return await handler(request)

    return auth


@web.middleware
async def errors_and_metrics(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error as JSON; every request counted and timed."""
    start = time.perf_counter()
    metrics = request.app[METRICS]
    resource = request.match_info.route.resource
    name = resource.canonical if resource is not None else "unmatched"
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as e:
        status = e.status
        if e.content_type != "application/json" and status >= 400:
            return _as_json(e)
        raise
    except Exception:
        log.exception("%s %s failed", request.method, request.path)
        raise error_500() from None
    finally:
        metrics.inc("api_requests_total", help="HTTP requests", route=name, status=str(status))
        metrics.observe("api_request_seconds", time.perf_counter() - start,
                        help="HTTP request latency", route=name)


def _as_json(e: web.HTTPException) -> web.Response:
    text = "request body too large" if e.status == 413 else (e.text or e.reason)
    response = json(Error(error=text or e.reason), status=e.status)
    for k, v in e.headers.items():
        if k.lower() not in ("content-type", "content-length"):
            response.headers[k] = v
    return response


def error_500() -> web.HTTPException:
    return web.HTTPInternalServerError(text=_encoder.encode(Error(error="internal error")).decode(),
                                       content_type="application/json")
