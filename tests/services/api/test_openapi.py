"""The OpenAPI document matches the real routes, and requests generated from it (valid and
not) never get a 5xx; every 2xx body decodes as the type the document names."""

from __future__ import annotations

import string
from typing import Any
from urllib.parse import quote

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.api.app import ALL_ROUTES, create_app
from services.api.config import ApiSettings
from services.api.openapi import OPS, spec

from .conftest import ADMIN, RunningApi, auth

pytestmark = pytest.mark.integration
SPEC = spec(ALL_ROUTES)
SCHEMAS = SPEC["components"]["schemas"]
RESPONSE_TYPES = {(r.method.lower(), r.path): r.response for r in ALL_ROUTES}
OPERATIONS = sorted((path, method) for path, ops in SPEC["paths"].items() for method in ops
                    if path != "/api/v1/stream")  # the stream never ends: tested on its own


def test_spec_lists_exactly_the_served_routes() -> None:
    app = create_app(ApiSettings())
    served = {(r.method.lower(), r.resource.canonical) for r in app.router.routes()
              if r.resource is not None and r.method != "HEAD"
              and r.resource.canonical.startswith(("/api/", *OPS))}
    documented = {(m, p) for p, ops in SPEC["paths"].items() for m in ops}
    assert served == documented


def test_every_reference_resolves() -> None:
    refs = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "$ref" in node:
                refs.add(node["$ref"].rsplit("/", 1)[1])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(SPEC)
    assert refs and refs <= set(SCHEMAS)


def from_schema(schema: dict[str, Any], depth: int = 0) -> st.SearchStrategy[Any]:
    """Values that fit a JSON Schema (the subset msgspec writes)."""
    if "$ref" in schema:
        return from_schema(SCHEMAS[schema["$ref"].rsplit("/", 1)[1]], depth)
    if "anyOf" in schema:
        return st.one_of(*(from_schema(s, depth) for s in schema["anyOf"]))
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if kind == "string":
        if "pattern" in schema:
            return st.from_regex(schema["pattern"], fullmatch=True).filter(
                lambda s: len(s) <= schema.get("maxLength", 10**6))
        return st.text(string.printable, min_size=schema.get("minLength", 0),
                       max_size=min(schema.get("maxLength", 30), 30))
    if kind == "integer":
        return st.integers(schema.get("minimum"), schema.get("maximum"))
    if kind == "number":
        low = schema.get("minimum", schema.get("exclusiveMinimum"))
        return st.floats(low, schema.get("maximum"), allow_nan=False, allow_infinity=False,
                         exclude_min="exclusiveMinimum" in schema)
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    if kind == "array":
        return st.lists(from_schema(schema.get("items", {}), depth + 1), max_size=3)
    if kind == "object" and depth < 3:
        props = schema.get("properties", {})
        if props:
            return st.fixed_dictionaries({}, optional={
                k: from_schema(v, depth + 1) for k, v in props.items()})
        values = schema.get("additionalProperties", {"type": "string"})
        return st.dictionaries(st.text(max_size=5), from_schema(values, depth + 1), max_size=3)
    return JUNK


JUNK: st.SearchStrategy[Any] = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=10),
    st.lists(st.integers(), max_size=2))


def _text(value: Any) -> str:
    return value if isinstance(value, str) else msgspec.json.encode(value).decode()


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, str, dict[str, str], Any]:
    path, method = draw(st.sampled_from(OPERATIONS))
    op = SPEC["paths"][path][method]
    query: dict[str, str] = {}
    for p in op["parameters"]:
        value = draw(st.one_of(from_schema(p["schema"]), JUNK) if p["in"] == "query"
                     else st.text(string.ascii_letters + string.digits + "-._ ~é", min_size=1,
                                  max_size=12))
        if p["in"] == "path":
            path = path.replace("{" + p["name"] + "}", quote(_text(value), safe=""))
        elif value is not None or draw(st.booleans()):
            query[p["name"]] = _text(value)
    body = None
    if "requestBody" in op:
        schema = op["requestBody"]["content"]["application/json"]["schema"]
        body = draw(st.one_of(from_schema(schema), JUNK))
    return method, path, query, body


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.filter_too_much])
@given(request=requests())
async def test_no_5xx_for_requests_from_the_spec(shared_api: RunningApi,
                                                 request: tuple[str, str, dict[str, str], Any]
                                                 ) -> None:
    method, path, query, body = request
    response = await shared_api.client.request(method.upper(), path, params=query,
                                               headers=auth(ADMIN), json=body)
    text = await response.text()
    assert response.status < 500, f"{method} {path} {query} {body}: {response.status} {text}"
    template = next(p for p, m in OPERATIONS if m == method and _matches(p, path))
    response_type = RESPONSE_TYPES.get((method, template))
    if 200 <= response.status < 300 and response_type is not None:
        msgspec.json.decode(text.encode(), type=response_type)  # the body is what the spec says
    elif response.status >= 400 and path.startswith("/api/"):
        assert "error" in msgspec.json.decode(text.encode())


def _matches(template: str, path: str) -> bool:
    t, p = template.split("/"), path.split("/")
    return len(t) == len(p) and all(a == b or a.startswith("{") for a, b in zip(t, p, strict=True))


async def test_stream_sends_the_fleet_first(shared_api: RunningApi) -> None:
    async with shared_api.client.get("/api/v1/stream", headers=auth(ADMIN)) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        first = await response.content.readuntil(b"\n\n")
    name, data = first.decode().split("\n")[:2]
    assert name == "event: fleet"
    fleet = msgspec.json.decode(data.removeprefix("data: "))
    assert set(fleet) == {"summary", "nodes", "queued", "running", "alerts", "tenants"}
