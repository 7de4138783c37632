"""The Native format at a client's protocol revision (``client_protocol_version``).

The engine reads and writes Native blocks as revision 0 does; a server answering a client of a
later revision writes each block's info first (revision > 0) and, after each column's type, a
byte saying whether the column has a custom serialization (revision >= 54454). These functions
add or remove exactly that, walking the columns' data by type to find where each ends. Pure
functions over bytes; a type they cannot walk gets a clear error naming it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from services.warehouse.errors import CANNOT_PARSE_INPUT, NOT_IMPLEMENTED, ClickHouseError

WITH_CUSTOM_SERIALIZATION = 54454
_BLOCK_INFO = b"\x01\x00\x02\xff\xff\xff\xff\x00"  # is_overflows = 0, bucket_num = -1, end

_FIXED = {
    "UInt8": 1, "Int8": 1, "Bool": 1, "Enum8": 1, "Nothing": 1,
    "UInt16": 2, "Int16": 2, "Date": 2, "Enum16": 2, "BFloat16": 2,
    "UInt32": 4, "Int32": 4, "Float32": 4, "DateTime": 4, "Date32": 4, "IPv4": 4,
    "Decimal32": 4, "Time": 4,
    "UInt64": 8, "Int64": 8, "Float64": 8, "DateTime64": 8, "Decimal64": 8, "Time64": 8,
    "UInt128": 16, "Int128": 16, "UUID": 16, "IPv6": 16, "Decimal128": 16,
    "UInt256": 32, "Int256": 32, "Decimal256": 32,
}


@dataclass(frozen=True)
class Type:
    name: str
    args: tuple[str, ...] = ()


def parse_type(text: str) -> Type:
    text = text.strip()
    open_at = text.find("(")
    if open_at < 0:
        return Type(text)
    return Type(text[:open_at].strip(), tuple(_split_args(text[open_at + 1:text.rfind(")")])))


def _split_args(text: str) -> list[str]:
    args, depth, start, quote = [], 0, 0, ""
    for i, c in enumerate(text):
        if quote:
            if c == quote and text[i - 1] != "\\":
                quote = ""
        elif c in "'`\"":
            quote = c
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
        elif c == "," and depth == 0:
            args.append(text[start:i].strip())
            start = i + 1
    args.append(text[start:].strip())
    return [a for a in args if a]


class _Reader:
    def __init__(self, data: bytes, pos: int = 0) -> None:
        self.data, self.pos = data, pos

    def varint(self) -> int:
        shift = value = 0
        while True:
            if self.pos >= len(self.data):
                raise _truncated()
            byte = self.data[self.pos]
            self.pos += 1
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                return value
            shift += 7

    def skip(self, n: int) -> None:
        if self.pos + n > len(self.data):
            raise _truncated()
        self.pos += n

    def string(self) -> str:
        n = self.varint()
        start = self.pos
        self.skip(n)
        return self.data[start:self.pos].decode()

    def uint64s(self, n: int) -> list[int]:
        start = self.pos
        self.skip(8 * n)
        return list(struct.unpack_from(f"<{n}Q", self.data, start))


def _skip_column(r: _Reader, t: Type, rows: int) -> None:
    """Move past ``rows`` values of type ``t`` in Native's column layout."""
    name = t.name
    if name in _FIXED:
        r.skip(_FIXED[name] * rows)
    elif name == "Decimal":
        precision = int(t.args[0])
        r.skip(rows * (4 if precision <= 9 else 8 if precision <= 18 else
                       16 if precision <= 38 else 32))
    elif name == "FixedString":
        r.skip(int(t.args[0]) * rows)
    elif name == "String":
        _skip_strings(r, rows)
    elif name == "Nullable":
        r.skip(rows)
        _skip_column(r, parse_type(t.args[0]), rows)
    elif name in ("Array", "Map"):
        offsets = r.uint64s(rows)
        total = offsets[-1] if offsets else 0
        for arg in t.args:  # Map(K, V): keys, then values
            _skip_column(r, parse_type(arg), total)
    elif name == "Tuple":
        for arg in t.args:
            _skip_column(r, parse_type(_element_type(arg)), rows)
    elif name == "LowCardinality":
        _skip_low_cardinality(r, t, rows)
    elif name == "SimpleAggregateFunction":
        _skip_column(r, parse_type(t.args[-1]), rows)
    else:
        raise ClickHouseError(NOT_IMPLEMENTED, f"DB::Exception: Type {name} in Native format "
                              "with client_protocol_version is not supported by this endpoint; "
                              "cast the column (e.g. toString) or use another format")


def _skip_strings(r: _Reader, rows: int) -> None:
    """Move past ``rows`` length-prefixed strings (the hot loop: short lengths inline)."""
    data, pos = r.data, r.pos
    try:
        for _ in range(rows):
            n = data[pos]
            if n < 0x80:
                pos += 1 + n
            else:
                r.pos = pos
                n = r.varint()
                pos = r.pos + n
    except IndexError:
        raise _truncated() from None
    if pos > len(data):
        raise _truncated()
    r.pos = pos


def _skip_low_cardinality(r: _Reader, t: Type, rows: int) -> None:
    """Keys version, then per block: flags (index width, additional keys), the keys (of the
    type without Nullable), the number of rows and their indexes."""
    r.uint64s(1)  # keys serialization version
    if rows == 0:
        return
    (flags,) = r.uint64s(1)
    if flags & (1 << 8):
        raise ClickHouseError(NOT_IMPLEMENTED, "DB::Exception: A shared LowCardinality "
                              "dictionary in Native data is not supported")
    inner = parse_type(t.args[0])
    keys_type = parse_type(inner.args[0]) if inner.name == "Nullable" else inner
    if flags & (1 << 9):
        (keys,) = r.uint64s(1)
        _skip_column(r, keys_type, keys)
    (count,) = r.uint64s(1)
    r.skip(count * (1, 2, 4, 8)[flags & 0xFF])


def _element_type(arg: str) -> str:
    """A tuple element's type: ``a String`` (named) or ``String``."""
    first = arg.split(" ", 1)
    if len(first) == 2 and "(" not in first[0] and first[0] not in _FIXED and \
            first[0] not in ("String", "Nullable", "Array", "Map", "Tuple", "FixedString"):
        return first[1]
    return arg


def _convert(data: bytes, *, add: bool, revision: int) -> bytes:
    out: list[bytes] = []
    r = _Reader(data)
    custom = revision >= WITH_CUSTOM_SERIALIZATION
    while r.pos < len(data):
        if add and revision > 0:
            out.append(_BLOCK_INFO)
        elif revision > 0:
            _skip_block_info(r)
        start = r.pos
        cols, rows = r.varint(), r.varint()
        out.append(data[start:r.pos])
        for _ in range(cols):
            start = r.pos
            r.string()
            type_text = r.string()
            out.append(data[start:r.pos])
            if custom and add:
                out.append(b"\x00")
            elif custom:
                if r.pos >= len(data):
                    raise _truncated()
                if data[r.pos] != 0:
                    raise ClickHouseError(NOT_IMPLEMENTED, "DB::Exception: Custom (sparse) "
                                          "serialization in Native input is not supported")
                r.pos += 1
            start = r.pos
            _skip_column(r, parse_type(type_text), rows)
            out.append(data[start:r.pos])
    return b"".join(out)


def _skip_block_info(r: _Reader) -> None:
    while True:
        field = r.varint()
        if field == 0:
            return
        r.skip({1: 1, 2: 4, 3: 0}.get(field, 0))
        if field == 3:  # out-of-order buckets: a list of Int32
            r.skip(4 * r.varint())


def to_client(data: bytes, revision: int) -> bytes:
    """The engine's Native output as a server writes it for a client of ``revision``."""
    return data if revision <= 0 else _convert(data, add=True, revision=revision)


def from_client(data: bytes, revision: int) -> bytes:
    """A client's Native input at ``revision`` as the engine reads it."""
    return data if revision <= 0 else _convert(data, add=False, revision=revision)


def _truncated() -> ClickHouseError:
    return ClickHouseError(CANNOT_PARSE_INPUT, "DB::Exception: Native data cut short")
