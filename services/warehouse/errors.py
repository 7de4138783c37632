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
UNKNOWN_COMPRESSION_METHOD = 89
CHECKSUM_DOESNT_MATCH = 40
TOO_LARGE_SIZE_COMPRESSED = 39
SESSION_NOT_FOUND = 372
SESSION_IS_LOCKED = 373
UNKNOWN_EXCEPTION = 1002
CANNOT_PARSE_INPUT = 27
ACCESS_DENIED = 497
DATABASE_ACCESS_DENIED = 291
INTO_OUTFILE_NOT_ALLOWED = 358
TOO_MANY_SIMULTANEOUS_QUERIES = 202
SETTING_CONSTRAINT_VIOLATION = 452
QUERY_WAS_CANCELLED = 394
TIMEOUT_EXCEEDED = 159
BAD_ARGUMENTS = 36

_NAMES = {
    SYNTAX_ERROR: "SYNTAX_ERROR", UNKNOWN_SETTING: "UNKNOWN_SETTING",
    NOT_IMPLEMENTED: "NOT_IMPLEMENTED", READONLY: "READONLY",
    AUTHENTICATION_FAILED: "AUTHENTICATION_FAILED", REQUIRED_PASSWORD: "REQUIRED_PASSWORD",
    UNKNOWN_FORMAT: "UNKNOWN_FORMAT", CANNOT_DECOMPRESS: "CANNOT_DECOMPRESS",
    UNKNOWN_COMPRESSION_METHOD: "UNKNOWN_COMPRESSION_METHOD",
    CHECKSUM_DOESNT_MATCH: "CHECKSUM_DOESNT_MATCH",
    TOO_LARGE_SIZE_COMPRESSED: "TOO_LARGE_SIZE_COMPRESSED",
    SESSION_NOT_FOUND: "SESSION_NOT_FOUND", SESSION_IS_LOCKED: "SESSION_IS_LOCKED",
    UNKNOWN_EXCEPTION: "UNKNOWN_EXCEPTION",
    CANNOT_PARSE_INPUT: "CANNOT_PARSE_INPUT_ASSERTION_FAILED",
    ACCESS_DENIED: "ACCESS_DENIED", DATABASE_ACCESS_DENIED: "DATABASE_ACCESS_DENIED",
    INTO_OUTFILE_NOT_ALLOWED: "INTO_OUTFILE_NOT_ALLOWED",
    TOO_MANY_SIMULTANEOUS_QUERIES: "TOO_MANY_SIMULTANEOUS_QUERIES",
    SETTING_CONSTRAINT_VIOLATION: "SETTING_CONSTRAINT_VIOLATION",
    QUERY_WAS_CANCELLED: "QUERY_WAS_CANCELLED", TIMEOUT_EXCEEDED: "TIMEOUT_EXCEEDED",
}

# ClickHouse's own mapping (src/Server/HTTP/exceptionCodeToHTTPStatus.cpp); every other code
# is 500, READONLY and SESSION_NOT_FOUND included.
_STATUS: dict[int, int] = {
    REQUIRED_PASSWORD: 401,
    # UNKNOWN_USER, WRONG_PASSWORD, AUTHENTICATION_FAILED, SET_NON_GRANTED_ROLE, ACCESS_DENIED
    **dict.fromkeys((192, 193, 516, 512, 497), 403),
    # BAD_ARGUMENTS, CANNOT_COMPILE_REGEXP, CANNOT_PARSE_{TEXT, ESCAPE_SEQUENCE, QUOTED_STRING,
    # DATE, DATETIME, NUMBER, DOMAIN_VALUE_FROM_STRING, IPV4, IPV6, INPUT_ASSERTION_FAILED, UUID},
    # DUPLICATE_COLUMN, ILLEGAL_COLUMN, UNKNOWN_ELEMENT_IN_AST, UNKNOWN_TYPE_OF_AST_NODE,
    # THERE_IS_NO_COLUMN, TOO_DEEP_AST, TOO_BIG_AST, UNEXPECTED_AST_STRUCTURE, SYNTAX_ERROR,
    # INCORRECT_DATA, TYPE_MISMATCH, VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE
    **dict.fromkeys((36, 427, 6, 25, 26, 38, 41, 72, 441, 675, 676, 27, 376, 15, 44, 37, 123, 8,
                     167, 168, 223, 62, 117, 53, 321), 400),
    # UNKNOWN_{TABLE, FUNCTION, IDENTIFIER, TYPE, STORAGE, DATABASE, SETTING,
    # DIRECTION_OF_SORTING, AGGREGATE_FUNCTION, FORMAT, DATABASE_ENGINE, TYPE_OF_QUERY, ROLE}
    **dict.fromkeys((60, 46, 47, 50, 56, 81, 115, 152, 63, 73, 336, 78, 511), 404),
    229: 413,  # QUERY_IS_TOO_LARGE
    NOT_IMPLEMENTED: 501,
    **dict.fromkeys((209, 76, 439), 503),  # SOCKET_TIMEOUT, CANNOT_OPEN_FILE, CANNOT_SCHEDULE_TASK
    381: 411,  # HTTP_LENGTH_REQUIRED
    TIMEOUT_EXCEEDED: 408,
    779: 415,  # UNSUPPORTED_MEDIA_TYPE
}

_CODE = re.compile(r"Code:\s*(\d+)")


@dataclass
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


_PREFIX = re.compile(r"^\s*(?:Code:\s*\d+\.\s*)?(?:DB::Exception:\s*)?")
_VERSION = re.compile(r"\s*\(version [^)]*\)\.?")
_NAME_TAIL = re.compile(r"(\s*\([A-Z_]+\))\.?\s*$")


def from_engine(text: str) -> ClickHouseError:
    """The engine's exception text ("Code: 62. DB::Exception: ...") as an error value, with
    the prefix, the version and the code's name said once (chDB nests its own text inside)."""
    m = _CODE.search(text)
    if not m:
        return ClickHouseError(UNKNOWN_EXCEPTION, f"DB::Exception: {text.strip()}")
    message = _VERSION.sub("", text[m.start():]).strip()
    while True:
        stripped = _PREFIX.sub("", message, count=1)
        if stripped == message:
            break
        message = stripped
    tails: list[str] = []
    while (t := _NAME_TAIL.search(message)) is not None:
        tails.insert(0, t.group(1).strip())
        message = message[:t.start()].rstrip()
    tail = f" {tails[-1]}" if tails else ""
    return ClickHouseError(int(m.group(1)), f"DB::Exception: {message.rstrip('.')}.{tail}")


def readonly(user: str, what: str = "Cannot execute query in readonly mode") -> ClickHouseError:
    return ClickHouseError(READONLY, f"DB::Exception: {user}: {what}")
