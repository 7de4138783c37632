"""Who may do what: each role allowed and refused as specified (401 without a valid token,
403 with a token whose role or tenant does not allow it)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from services.api.auth import (
    Authenticator,
    Principal,
    Role,
    TokenError,
    bind_refusal,
    parse_tokens,
)

from .conftest import ADMIN, SUBMITTER_A, SUBMITTER_B, VIEWER, RunningApi, auth

pytestmark = pytest.mark.integration
BAD = "not-a-known-token"


@pytest.mark.parametrize(("method", "path", "body", "token", "status"), [
    ("GET", "/api/v1/cluster", None, None, 401),
    ("GET", "/api/v1/cluster", None, BAD, 401),
    ("GET", "/api/v1/cluster", None, VIEWER, 200),
    ("GET", "/api/v1/jobs", None, SUBMITTER_A, 200),
    ("GET", "/api/v1/nodes", None, ADMIN, 200),
    ("POST", "/api/v1/jobs", {"tenant": "team-a"}, None, 401),
    ("POST", "/api/v1/jobs", {"tenant": "team-a"}, BAD, 401),
    ("POST", "/api/v1/jobs", {"tenant": "team-a"}, VIEWER, 403),
    ("POST", "/api/v1/jobs", {"tenant": "team-a"}, SUBMITTER_A, 202),
    ("POST", "/api/v1/jobs", {}, SUBMITTER_A, 202),  # its own tenant by default
    ("POST", "/api/v1/jobs", {"tenant": "team-a"}, SUBMITTER_B, 403),
    ("POST", "/api/v1/jobs", {"tenant": "team-b"}, ADMIN, 202),
    ("POST", "/api/v1/jobs/owned-by-a/cancel", {}, None, 401),
    ("POST", "/api/v1/jobs/owned-by-a/cancel", {}, VIEWER, 403),
    ("POST", "/api/v1/jobs/owned-by-a/cancel", {}, SUBMITTER_B, 403),
    ("POST", "/api/v1/jobs/owned-by-a/cancel", {}, SUBMITTER_A, 202),
    ("POST", "/api/v1/jobs/owned-by-a/cancel", {}, ADMIN, 202),
    ("GET", "/healthz", None, None, 200),
    ("GET", "/metrics", None, None, 200),
    ("GET", "/", None, None, 200),
])
async def test_role_matrix(shared_api: RunningApi, method: str, path: str,
                           body: dict[str, Any] | None, token: str | None, status: int) -> None:
    if "owned-by-a" in path and "owned-by-a" not in shared_api.state.jobs:
        r = await shared_api.client.post("/api/v1/jobs", headers=auth(ADMIN),
                                         json={"job_id": "owned-by-a", "tenant": "team-a"})
        assert r.status == 202
    response = await shared_api.client.request(method, path, headers=auth(token), json=body)
    assert response.status == status, await response.text()
    if status in (401, 403):
        assert "error" in await response.json()


@pytest.mark.parametrize("header", [b"Bearer \xff\xfe", b"Bearer abc\xc3", b"\xff abc"])
async def test_a_token_that_is_not_utf8_is_a_bad_token(shared_api: RunningApi,
                                                      header: bytes) -> None:
    server = shared_api.client.server
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        writer.write(b"GET /api/v1/cluster HTTP/1.1\r\nHost: api\r\nConnection: close\r\n"
                     b"Authorization: " + header + b"\r\n\r\n")
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), 10)
    finally:
        writer.close()
        await writer.wait_closed()
    assert status_line.split()[1] == b"401", status_line


@pytest.mark.parametrize(("tokens", "open_reads", "header", "expected"), [
    ("", False, None, Principal(role=Role.ADMIN, name="local")),  # no tokens: auth is off
    ("abcdefgh:viewer", True, None, Principal(role=Role.VIEWER)),
    ("abcdefgh:viewer", False, None, None),
    ("abcdefgh:admin", False, "Bearer abcdefgh", Principal(Role.ADMIN, None, "token#1:ADMIN")),
    ("abcdefgh:admin", False, "Bearer wrong", None),
    ("abcdefgh:admin", False, "Basic abcdefgh", None),
    # header bytes that are not UTF-8 reach the handler as lone surrogates (surrogateescape)
    ("abcdefgh:admin", False, "Bearer \udcff\udcfe", None),
    ("abcdefgh:submitter:t1", False, "Bearer abcdefgh",
     Principal(Role.SUBMITTER, "t1", "token#1:SUBMITTER")),
])
def test_identify(tokens: str, open_reads: bool, header: str | None,
                  expected: Principal | None) -> None:
    who, _ = Authenticator(parse_tokens(tokens), open_reads).identify(header)
    assert who == expected


@pytest.mark.parametrize("tokens", ["short:admin", "abcdefgh:root", "abcdefgh:submitter"])
def test_bad_token_settings_are_refused(tokens: str) -> None:
    with pytest.raises(TokenError, match="GPUFLEET_API_TOKENS"):
        parse_tokens(tokens)


@pytest.mark.parametrize(("who", "tenant", "allowed"), [
    (Principal(Role.ADMIN), "x", True),
    (Principal(Role.SUBMITTER, "x"), "x", True),
    (Principal(Role.SUBMITTER, "x"), "y", False),
    (Principal(Role.VIEWER), "x", False),
])
def test_may_act_for(who: Principal, tenant: str, allowed: bool) -> None:
    assert who.may_act_for(tenant) is allowed


@pytest.mark.parametrize(("host", "tokens", "refused"), [
    ("127.0.0.1", "", False),
    ("127.0.0.2", "", False),
    ("::1", "", False),
    ("[::1]", "", False),
    ("localhost", "", False),
    ("0.0.0.0", "", True),  # every interface
    ("::", "", True),
    ("", "", True),
    ("192.0.2.10", "", True),
    ("0.0.0.0", "abcdefgh:viewer", False),
    ("192.0.2.10", "abcdefgh:admin", False),
])
def test_without_tokens_only_loopback(host: str, tokens: str, refused: bool) -> None:
    reason = bind_refusal(host, parse_tokens(tokens))
    assert (reason is not None) is refused
    if reason is not None:
        assert "GPUFLEET_API_TOKENS" in reason
