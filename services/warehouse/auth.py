"""Who is asking: credentials from a request, checked against the configured users."""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Mapping
from dataclasses import dataclass

from services.warehouse.config import WarehouseSettings
from services.warehouse.errors import AUTHENTICATION_FAILED, ClickHouseError


@dataclass(frozen=True)
class User:
    name: str
    password: str
    readonly: bool


def users_from(settings: WarehouseSettings) -> dict[str, User]:
    writer = User(settings.warehouse_writer_user, settings.warehouse_writer_password, False)
    analyst = User(settings.warehouse_analyst_user, settings.warehouse_analyst_password, True)
    return {writer.name: writer, analyst.name: analyst}


def credentials(headers: Mapping[str, str], params: Mapping[str, str]) -> tuple[str, str]:
    """(user, password) as ClickHouse reads them: Basic auth, X-ClickHouse-User/Key headers, or
    ``user``/``password`` parameters; no credentials at all means ``default`` without password.
    Credentials given two ways at once, or a Basic header that is not base64 of UTF-8
    ``user:password``, are refused (AUTHENTICATION_FAILED), never read as ``default``."""
    auth = headers.get("Authorization", "")
    by_header = "X-ClickHouse-User" in headers or "X-ClickHouse-Key" in headers
    by_params = "user" in params or "password" in params
    if auth:
        if auth[:6].lower() != "basic ":
            raise _failed("only Basic authentication is supported in the Authorization header")
        if by_header or by_params:
            raise _failed("it is not allowed to use Authorization HTTP header and "
                          "authentication via parameters or X-ClickHouse headers simultaneously")
        try:
            decoded = base64.b64decode(auth[6:].strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise _failed("the Authorization header is not valid Basic credentials "
                          "(base64 of user:password in UTF-8)") from None
        user, colon, password = decoded.partition(":")
        if not colon:
            raise _failed("the Authorization header has no ':' between user and password")
        return user or "default", password
    if by_header:
        if by_params:
            raise _failed("it is not allowed to use X-ClickHouse HTTP headers and "
                          "authentication via parameters simultaneously")
        return headers.get("X-ClickHouse-User") or "default", headers.get("X-ClickHouse-Key", "")
    return params.get("user") or "default", params.get("password", "")


def _failed(why: str) -> ClickHouseError:
    return ClickHouseError(AUTHENTICATION_FAILED, f"DB::Exception: Invalid authentication: {why}")


def _bytes(text: str) -> bytes:
    """Bytes to compare, for any str: header values that are not UTF-8 arrive with lone
    surrogates (aiohttp decodes them with surrogateescape), which plain ``encode()`` refuses."""
    return text.encode("utf-8", "surrogatepass")


def authenticate(users: Mapping[str, User], name: str, password: str) -> User:
    user = users.get(name)
    # compare even for an unknown user, so the answer takes the same time either way
    ok = hmac.compare_digest(_bytes(password), _bytes(user.password if user else "\0"))
    if user is None or not ok:
        shown = name.encode("utf-8", "backslashreplace").decode()  # printable, whatever it is
        raise ClickHouseError(
            AUTHENTICATION_FAILED,
            f"DB::Exception: {shown}: Authentication failed: password is incorrect, "
            "or there is no user with such name.",
        )
    return user
