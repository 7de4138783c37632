"""Bearer tokens and roles: viewer reads, submitter submits and cancels its tenant's jobs,
admin does everything. Pure: the decision is a value, the handlers turn it into 401/403."""

from __future__ import annotations

import hmac
import ipaddress
import socket
from enum import IntEnum

from msgspec import Struct

from gpufleet.config import ConfigError


class Role(IntEnum):
    VIEWER = 1
    SUBMITTER = 2
    ADMIN = 3


class Principal(Struct, frozen=True):
    role: Role
    tenant: str | None = None  # a submitter's tenant
    name: str = "anonymous"

    def may_act_for(self, tenant: str) -> bool:
        """Whether this caller may submit or cancel a job of ``tenant``."""
        return self.role is Role.ADMIN or (self.role is Role.SUBMITTER and self.tenant == tenant)


WHERE = "GPUFLEET_API_TOKENS"


class TokenError(ConfigError):
    pass


def parse_tokens(text: str) -> dict[str, Principal]:
    """``"tok1:viewer,tok2:submitter:teamA,tok3:admin"`` -> token -> principal."""
    out: dict[str, Principal] = {}
    for n, part in enumerate(filter(None, (p.strip() for p in text.split(","))), 1):
        token, _, rest = part.partition(":")
        role_name, _, tenant = rest.partition(":")
        try:
            role = Role[role_name.strip().upper()]
        except KeyError:
            raise TokenError(f"{WHERE}: token #{n}: role {role_name!r} is not "
                             "viewer, submitter or admin") from None
        if not token or len(token) < 8:
            raise TokenError(f"{WHERE}: token #{n}: a token needs at least 8 characters")
        if role is Role.SUBMITTER and not tenant:
            raise TokenError(f"{WHERE}: token #{n}: a submitter token needs its tenant "
                             "(token:submitter:tenant)")
        out[token] = Principal(role=role, tenant=tenant or None, name=f"token#{n}:{role.name}")
    return out


class Authenticator:
    """Who is calling: the principal of a bearer token, the anonymous one, or nobody."""

    def __init__(self, tokens: dict[str, Principal], open_reads: bool) -> None:
        self._tokens = tokens
        if not tokens:
            self.anonymous: Principal | None = Principal(role=Role.ADMIN, name="local")
        else:
            self.anonymous = Principal(role=Role.VIEWER) if open_reads else None

    def identify(self, authorization: str | None) -> tuple[Principal | None, bool]:
        """``(principal, presented)``: a bad token yields ``(None, True)``."""
        if not self._tokens or not authorization:
            return self.anonymous, False
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return None, True
        presented = _bytes(token.strip())
        for known, principal in self._tokens.items():
            if hmac.compare_digest(_bytes(known), presented):
                return principal, True
        return None, True


def _bytes(text: str) -> bytes:
    """Bytes to compare, for any str: header bytes that are not UTF-8 arrive as lone
    surrogates (aiohttp decodes headers with surrogateescape), which plain ``encode()`` refuses;
    such a token is compared like any other, so it is a bad token (401), not an error (500)."""
    return text.encode("utf-8", "surrogatepass")


def is_loopback(host: str) -> bool:
    """Whether every address ``host`` names is a loopback one (``""`` means every interface)."""
    if not host:
        return False
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(i[4][0]).is_loopback for i in infos)


def bind_refusal(host: str, tokens: dict[str, Principal]) -> str | None:
    """Why the api must not listen on ``host`` with these tokens, or None.

    Without tokens every caller is an admin, and an admin's job runs its command on a node:
    that is only for this machine's own users, on loopback.
    """
    if tokens or is_loopback(host):
        return None
    return (f"refusing to listen on {host or '*'} without credentials: set {WHERE} "
            "(token:role[:tenant],...) or listen on loopback (GPUFLEET_API_HOST=127.0.0.1)")
