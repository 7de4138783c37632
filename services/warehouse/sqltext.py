"""Reading SQL text the way the HTTP interface needs to: pure functions, values in and out.

The endpoint does not parse SQL (the engine does); it only needs to know what kind of
statement a request holds, where an INSERT's inline data starts, and what ``SET``/``USE``
change in a session.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Statements that write or change the schema; a read-only user is refused them up front (the
# engine's read-only handles would refuse them too, and anything else not listed).
WRITE_KINDS = frozenset({
    "INSERT", "CREATE", "ALTER", "DROP", "TRUNCATE", "RENAME", "OPTIMIZE", "SYSTEM", "KILL",
    "GRANT", "REVOKE", "ATTACH", "DETACH", "DELETE", "UPDATE", "EXCHANGE", "UNDROP", "BACKUP",
    "RESTORE", "MOVE", "SET",
})
_WORD = re.compile(rb"[A-Za-z_][A-Za-z0-9_]*")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_HEREDOC = re.compile(rb"\$[A-Za-z0-9_]*\$")
_TRAILING_FORMAT = re.compile(r"\bFORMAT\s+([A-Za-z0-9_]+)\s*;?\s*$", re.IGNORECASE)


class SqlTextError(ValueError):
    """The text cannot be what it claims to be (a SET or USE we cannot read)."""


def _skip_space(text: bytes, i: int) -> int:
    """Index of the first byte at or after ``i`` that is not space or inside a comment."""
    n = len(text)
    while i < n:
        c = text[i : i + 1]
        if c in b" \t\r\n":
            i += 1
        elif text.startswith(b"--", i) or c == b"#":
            end = text.find(b"\n", i)
            i = n if end < 0 else end + 1
        elif text.startswith(b"/*", i):
            end = text.find(b"*/", i + 2)
            i = n if end < 0 else end + 2
        else:
            return i
    return n


def _skip_quoted(text: bytes, i: int) -> int:
    """Index just past the quoted string, identifier or backticked name starting at ``i``."""
    quote = text[i : i + 1]
    i += 1
    while i < len(text):
        c = text[i : i + 1]
        if c == b"\\":
            i += 2
            continue
        if c == quote:
            if text[i + 1 : i + 2] == quote:  # a doubled quote inside the string
                i += 2
                continue
            return i + 1
        i += 1
    return i


def first_keyword(sql: str | bytes) -> str:
    """The statement's kind: its first word in upper case, ``(`` for a parenthesized query."""
    text = sql.encode() if isinstance(sql, str) else sql
    i = _skip_space(text, 0)
    if text[i : i + 1] == b"(":
        return "("
    m = _WORD.match(text, i)
    return m.group().decode().upper() if m else ""


@dataclass(frozen=True)
class InlineInsert:
    """An ``INSERT ... FORMAT fmt`` followed by its data in the same text."""

    statement: str  # up to (not including) FORMAT
    fmt: str
    data: bytes


def split_insert(text: bytes) -> InlineInsert | None:
    """Find where an INSERT's data starts, as ClickHouse does: after ``FORMAT name`` and at most
    one newline. None when the text is not such an INSERT (VALUES, SELECT: the engine reads it)."""
    if first_keyword(text) != "INSERT":
        return None
    i, n = 0, len(text)
    while i < n:
        i = _skip_space(text, i)
        c = text[i : i + 1]
        if c in (b"'", b'"', b"`"):
            i = _skip_quoted(text, i)
            continue
        m = _WORD.match(text, i)
        if not m:
            i += 1
            continue
        word = m.group().upper()
        if word in (b"VALUES", b"SELECT", b"WITH"):
            return None
        if word == b"FORMAT":
            fmt = _WORD.match(text, _skip_space(text, m.end()))
            if not fmt:
                return None
            j = fmt.end()
            while text[j : j + 1] in (b" ", b"\t", b"\r"):
                j += 1
            if text[j : j + 1] == b"\n":
                j += 1
            return InlineInsert(text[:i].decode().rstrip(), fmt.group().decode(), text[j:])
        i = m.end()
    return None


def trailing_format(sql: str) -> str | None:
    """The output format named by a trailing ``FORMAT`` clause, if any."""
    m = _TRAILING_FORMAT.search(sql[-300:])
    return m.group(1) if m else None


def split_statements(text: str) -> list[str]:
    """Split a script on ``;`` outside strings and comments; empty statements are dropped."""
    data = text.encode()
    out: list[str] = []
    start = i = 0
    while i < len(data):
        j = _skip_space(data, i)
        if j != i:
            i = j
            continue
        c = data[i : i + 1]
        heredoc = _HEREDOC.match(data, i) if c == b"$" else None
        if c in (b"'", b'"', b"`"):
            i = _skip_quoted(data, i)
        elif heredoc is not None:  # $tag$ ... $tag$, a string the engine reads verbatim
            end = data.find(heredoc.group(), heredoc.end())
            i = len(data) if end < 0 else end + len(heredoc.group())
        elif c == b";":
            out.append(data[start:i].decode())
            start = i = i + 1
        else:
            i += 1
    out.append(data[start:].decode())
    return [s.strip() for s in out if _skip_space(s.encode(), 0) < len(s.encode())]


def split_top_level(text: str, sep: str) -> list[str]:
    parts: list[str] = []
    depth, start, i = 0, 0, 0
    while i < len(text):
        c = text[i]
        if c in "'\"`":
            end = text.find(c, i + 1)
            while end > 0 and text[end - 1] == "\\":
                end = text.find(c, end + 1)
            i = len(text) if end < 0 else end + 1
            continue
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif c == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
        i += 1
    parts.append(text[start:])
    return parts


def parse_set(sql: str) -> dict[str, str]:
    """``SET a = 1, b = 'x'`` as ``{name: SQL literal}``."""
    body = sql.strip().rstrip(";").strip()
    if first_keyword(body) != "SET":
        raise SqlTextError("not a SET statement")
    changes: dict[str, str] = {}
    for part in split_top_level(body[3:], ","):
        name, eq, value = part.partition("=")
        name = name.strip()
        if not eq or not setting_name_ok(name) or not value.strip():
            raise SqlTextError(f"cannot read setting assignment {part.strip()!r}")
        changes[name] = value.strip()
    return changes


def parse_use(sql: str) -> str:
    """The database named by ``USE db``."""
    words = sql.strip().rstrip(";").split()
    if len(words) != 2 or words[0].upper() != "USE":
        raise SqlTextError("expected USE <database>")
    return words[1].strip("`\"")


def setting_name_ok(name: str) -> bool:
    return bool(_NAME.match(name))


def quote_literal(value: str) -> str:
    """A string as a ClickHouse string literal; the engine converts it to the setting's type."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def quote_identifier(name: str) -> str:
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


_USER_FUNCTIONS = frozenset({b"currentuser", b"current_user", b"user", b"sessionuser",
                             b"session_user", b"authenticateduser"})
_EMPTY_CALL = re.compile(rb"\s*\(\s*\)")


def with_current_user(text: bytes, user: str) -> bytes:
    """The statement with ``currentUser()`` (and its aliases) as the endpoint's user: the engine
    runs every statement as its one local user, the endpoint knows who really asks. Each call
    becomes ``('name' AS `currentUser()`)``, so a result column keeps its name."""
    out: list[bytes] = []
    i = start = 0
    n = len(text)
    while i < n:
        j = _skip_space(text, i)
        if j != i:
            i = j
            continue
        c = text[i : i + 1]
        if c in (b"'", b'"', b"`"):
            i = _skip_quoted(text, i)
            continue
        m = _WORD.match(text, i)
        if m is None:
            i += 1
            continue
        call = _EMPTY_CALL.match(text, m.end())
        before = text[i - 1 : i] if i else b""
        if m.group().lower() in _USER_FUNCTIONS and call and before != b".":
            original = text[i:call.end()].decode()
            out += [text[start:i], f"({quote_literal(user)} AS {quote_identifier(original)})"
                    .encode()]
            i = start = call.end()
            continue
        i = m.end()
    out.append(text[start:])
    return b"".join(out)
