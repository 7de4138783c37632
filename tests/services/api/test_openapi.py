"""The OpenAPI document matches the real routes, and requests that schemathesis generates from
the served document (valid and not) pass all of its checks."""

from __future__ import annotations

import time
from typing import Any

import msgspec
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import Case, GenerationMode, Response
from schemathesis.checks import positive_data_acceptance
from schemathesis.core.failures import FailureGroup
from schemathesis.schemas import BaseSchema

from services.api.app import ALL_ROUTES, create_app
from services.api.config import ApiSettings
from services.api.openapi import OPS, spec

from .conftest import ADMIN, RunningApi, auth

pytestmark = pytest.mark.integration
SPEC = spec(ALL_ROUTES)
SCHEMAS = SPEC["components"]["schemas"]


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


STREAM = "/api/v1/stream"
_strategies: dict[GenerationMode, st.SearchStrategy[Case]] = {}


@pytest.fixture(scope="module")
async def served_spec(shared_api: RunningApi) -> BaseSchema:
    """The OpenAPI document as the api serves it, loaded by schemathesis."""
    response = await shared_api.get("/api/v1/openapi.json")
    assert response.status == 200
    _strategies.clear()
    return schemathesis.openapi.from_dict(await response.json())


def cases(schema: BaseSchema, mode: GenerationMode) -> st.SearchStrategy[Case]:
    """Requests to every operation but the stream (it never ends: tested on its own)."""
    if mode not in _strategies:
        _strategies[mode] = schema.exclude(path=STREAM).as_strategy(mode)
    return _strategies[mode]


async def send(api: RunningApi, case: Case) -> Response:
    """``case`` sent to the api (encoded as schemathesis encodes it), its answer for the checks."""
    kwargs = case.as_transport_kwargs(base_url=str(api.client.make_url("")).rstrip("/"),
                                      headers=auth(ADMIN))
    kwargs.pop("cookies", None)
    kwargs["headers"].pop("Accept-Encoding", None)  # the checks read the body as sent
    prepared = requests.Request(**kwargs).prepare()
    started = time.monotonic()
    async with api.client.session.request(prepared.method or "GET", prepared.url or "",
                                          headers=dict(prepared.headers),
                                          data=prepared.body) as answer:
        content = await answer.read()
        headers = {k: answer.headers.getall(k) for k in set(answer.headers)}
        return Response(answer.status, headers, content, prepared,
                        time.monotonic() - started, verify=True)


# Each example is one HTTP request, positive (valid by the document) or negative (invalid):
# every schemathesis check runs on the answer (no 5xx, a documented status and content type, a
# body of the documented schema, valid data accepted, invalid data refused).
@settings(max_examples=100, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(data=st.data())
async def test_requests_from_the_served_spec_pass_every_check(
        shared_api: RunningApi, served_spec: BaseSchema, data: st.DataObject) -> None:
    case = data.draw(cases(served_spec, data.draw(st.sampled_from(list(GenerationMode)))))
    response = await send(shared_api, case)
    broken = history_rule_broken(case, time.time())
    if broken is not None:  # valid by the schema, but not by the rule the document states
        assert (response.status_code, response.json()["field"]) == (400, broken), response.text
        case.validate_response(response, excluded_checks=[positive_data_acceptance])
    else:
        case.validate_response(response)


# The routes with a time range, and their default span and step (seconds).
RULED = {"/api/v1/history/utilization": (3600, 300),
         "/api/v1/tenants/{tenant}/waste": (86_400, 3600)}


def history_rule_broken(case: Case, now: float) -> str | None:
    """The parameter a history or waste request breaks the rule of (written in the parameters'
    descriptions, since JSON Schema cannot compare two parameters): ``from`` before ``to``,
    at most 20,000 steps between them."""
    defaults = RULED.get(case.path)
    if defaults is None or not case.meta or not case.meta.generation.mode.is_positive:
        return None
    span, default_step = defaults
    q = case.query or {}
    to = int(q["to"]) if q.get("to") is not None else int(now)
    start = int(q["from"]) if q.get("from") is not None else max(0, to - span)
    step = int(q.get("step", default_step))
    if start >= to:
        return "from"
    if step % 3600 == 0:
        start, to = start - start % 3600, to + (-to) % 3600
    return "step" if (to - start) // step > 20_000 else None


async def test_stream_sends_the_fleet_first_as_the_document_says(
        shared_api: RunningApi, served_spec: BaseSchema) -> None:
    case = served_spec[STREAM]["GET"].Case()
    kwargs = case.as_transport_kwargs(base_url=str(shared_api.client.make_url("")).rstrip("/"),
                                      headers=auth(ADMIN))
    started = time.monotonic()
    async with shared_api.client.get(STREAM, headers=auth(ADMIN)) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        first = await response.content.readuntil(b"\n\n")
        headers = {k: response.headers.getall(k) for k in set(response.headers)}
    name, data = first.decode().split("\n")[:2]
    assert name == "event: fleet"
    fleet = msgspec.json.decode(data.removeprefix("data: "))
    assert set(fleet) == {"summary", "nodes", "queued", "running", "alerts", "tenants"}
    kwargs.pop("cookies", None)
    prepared = requests.Request(**kwargs).prepare()
    # the event (its name, its data as JSON of the named Struct) is what the document says
    case.validate_response(Response(200, headers, first, prepared, time.monotonic() - started,
                                    verify=True))
    wrong = first.replace(b'"summary":', b'"summry":', 1)
    with pytest.raises(FailureGroup, match="1 distinct failure"):  # and the check can fail
        case.validate_response(Response(200, headers, wrong, prepared, 0.0, verify=True))
