"""The OpenAPI 3 document of the api, generated from the route table and the body Structs."""

from __future__ import annotations

import re
from typing import Any

import msgspec
from aiohttp import web

from services.api.handling import Route, json
from services.api.schemas import TOGETHER, Error

REF = "#/components/schemas/{name}"
STATUS_TEXT = {400: "bad input (the error names the field)", 401: "no valid bearer token",
               403: "the token's role may not do this", 404: "not found",
               409: "conflicts with the job's state", 413: "request body too large",
               503: "a backend (Kafka or the warehouse) is not reachable"}
OPS = ("/healthz", "/readyz", "/metrics")


def _parameters(route: Route, components: dict[str, Any]) -> list[dict[str, Any]]:
    bounded = (components[route.path_params.__name__]["properties"]
               if route.path_params is not None else {})
    params: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True,
         "schema": bounded.get(name, {"type": "string", "minLength": 1})}
        for name in re.findall(r"{(\w+)}", route.path)
    ]
    if route.query is not None:
        schema = components[route.query.__name__]
        required = set(schema.get("required", ()))
        for name, prop in schema["properties"].items():
            params.append({"name": name, "in": "query", "required": name in required,
                           "schema": prop})
    return params


def _operation(route: Route, components: dict[str, Any]) -> dict[str, Any]:
    op: dict[str, Any] = {
        "operationId": route.handler.__name__, "summary": route.summary, "tags": [route.tag],
        "parameters": _parameters(route, components), "x-role": route.role.name.lower(),
    }
    if route.body is not None:
        op["requestBody"] = {"required": False, "content": {
            "application/json": {"schema": {"$ref": REF.format(name=route.body.__name__)}}}}
    if route.response is not None:
        ok = {"schema": {"$ref": REF.format(name=route.response.__name__)}}
    elif route.events:
        ok = {"schema": _event_schema(route.events)}
    elif route.content_type == "application/json":  # JSON without a Struct: this document
        ok = {"schema": {"type": "object"}}
    else:
        ok = {"schema": {"type": "string"}}
    responses: dict[str, Any] = {str(route.status): {"description": "success",
                                                     "content": {route.content_type: ok}}}
    err = {"application/json": {"schema": {"$ref": REF.format(name="Error")}}}
    statuses = {*route.errors} | ({400} if route.query or route.body else set())
    for status in sorted(statuses):
        responses[str(status)] = {"description": STATUS_TEXT[status], "content": err}
    op["responses"] = responses
    return op


def _event_schema(events: tuple[tuple[str, type], ...]) -> dict[str, Any]:
    """One server-sent event (OpenAPI 3.1: the schema of a ``text/event-stream`` describes each
    event): its name, and its ``data`` as JSON of the event's Struct."""
    return {"oneOf": [
        {"type": "object", "required": ["event", "data"], "properties": {
            "event": {"const": name},
            "data": {"type": "string", "contentMediaType": "application/json",
                     "contentSchema": {"$ref": REF.format(name=cls.__name__)}}}}
        for name, cls in events]}


def spec(routes: list[Route], version: str = "0.1.0") -> dict[str, Any]:
    types = {t for r in routes
             for t in (r.query, r.body, r.response, r.path_params, *(c for _, c in r.events))
             if t is not None}
    _, components = msgspec.json.schema_components(
        sorted([*types, Error], key=lambda t: t.__name__), ref_template=REF)
    for name, rules in TOGETHER.items():
        if name in components:
            components[name] = {**components[name], **rules}
    paths: dict[str, dict[str, Any]] = {}
    for r in routes:
        paths.setdefault(r.path, {})[r.method.lower()] = _operation(r, components)
    for path in OPS:
        paths[path] = {"get": {"operationId": path.strip("/"), "tags": ["ops"],
                               "summary": f"operations: {path}", "parameters": [],
                               "responses": {"200": {"description": "success"}}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "gpufleet api", "version": version,
                 "description": "Status, jobs and utilization history of a GPU fleet."},
        "servers": [{"url": "/"}],
        "components": {"schemas": components, "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer"}}},
        "security": [{"bearer": []}, {}],
        "paths": paths,
    }


def route(routes: list[Route]) -> Route:
    """The route serving the document itself (it is listed in the document too)."""
    document: dict[str, Any] = {}

    async def openapi(_: web.Request) -> web.Response:
        if not document:
            document.update(spec([*routes, this]))
        return json(document)

    this = Route("GET", "/api/v1/openapi.json", openapi, "This OpenAPI document",
                 response=None, errors=(), tag="meta")
    return this
