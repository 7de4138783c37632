"""ClickHouse errors as the HTTP interface reports them: a code, an HTTP status, a message."""

from __future__ import annotations

import re
from dataclasses import dataclass

SYNTAX_ERROR = 62
UNKNOWN_SETTING = 115
NOT_IMPLEMENTED = 48
UNKNOWN_USER = 192
REQUIRED_PASSWORD = 194
READONLY = 164
AUTHENTICATION_FAILED = 516
UNKNOWN_FORMAT = 73
CANNOT_DECOMPRESS = 271
SESSION_NOT_FOUND = 372
UNKNOWN_EXCEPTION = 1002
CANNOT_PARSE_INPUT = 27

_NAMES = {
    SYNTAX_ERROR: "SYNTAX_ERROR", UNKNOWN_SETTING: "UNKNOWN_SETTING",
    NOT_IMPLEMENTED: "NOT_IMPLEMENTED", READONLY: "READONLY",
    AUTHENTICATION_FAILED: "AUTHENTICATION_FAILED", REQUIRED_PASSWORD: "REQUIRED_PASSWORD",
    UNKNOWN_FORMAT: "UNKNOWN_FORMAT", CANNOT_DECOMPRESS: "CANNOT_DECOMPRESS",
    SESSION_NOT_FOUND: "SESSION_NOT_FOUND", UNKNOWN_EXCEPTION: "UNKNOWN_EXCEPTION",
    CANNOT_PARSE_INPUT: "CANNOT_PARSE_INPUT_ASSERTION_FAILED",
}

# What ClickHouse's HTTP handler answers for an exception code (HTTPHandler.cpp); else 500.
_STATUS: dict[int, int] = {
    REQUIRED_PASSWORD: 401,
    UNKNOWN_USER: 403, AUTHENTICATION_FAILED: 403, 193: 403, READONLY: 403, 497: 403,
    **dict.fromkeys((36, 6, 27, 38, 41, 43, 26, 72, 32, SYNTAX_ERROR, 69, 117, 271, 76), 400),
    **dict.fromkeys((60, 46, 47, 50, 56, 81, UNKNOWN_SETTING, 49, 63, UNKNOWN_FORMAT, 170, 253,
                     SESSION_NOT_FOUND), 404),
    NOT_IMPLEMENTED: 501,
    159: 408,
}

_CODE = re.compile(r"Code:\s*(\d+)")


@dataclass(frozen=True)
class ClickHouseError(Exception):
    code: int
    message: str  # "DB::Exception: ..." text, without the "Code: N." prefix

    @property
    def status(self) -> int:
        return http_status(self.code)

    def body(self, version: str) -> str:
        name = _NAMES.get(self.code)
        tail = f" ({name})" if name and f"({name})" not in self.message else ""
        return f"Code: {self.code}. {self.message}{tail} (version {version})\n"


def http_status(code: int) -> int:
    return _STATUS.get(code, 500)


def from_engine(text: str) -> ClickHouseError:
    """The engine's exception text ("Code: 62. DB::Exception: ...") as an error value."""
    m = _CODE.search(text)
    if not m:
        return ClickHouseError(UNKNOWN_EXCEPTION, f"DB::Exception: {text.strip()}")
    message = text[m.end():].lstrip(". ").strip()
    # chDB sometimes repeats the prefix ("Code: 164. DB::Exception: Code: 164. ..."); keep one.
    inner = _CODE.match(message.removeprefix("DB::Exception:").strip())
    if inner and inner.group(1) == m.group(1):
        message = "DB::Exception:" + message.removeprefix("DB::Exception:").strip()[
            inner.end():].lstrip(".")
    message = re.sub(r"\s*\(version [^)]*\)\s*$", "", message)
    return ClickHouseError(int(m.group(1)), message)


def readonly(user: str, what: str = "Cannot execute query in readonly mode") -> ClickHouseError:
    return ClickHouseError(READONLY, f"DB::Exception: {user}: {what}")
