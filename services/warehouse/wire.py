"""Bodies on the wire: Content-Encoding of requests and responses, content types of formats."""

from __future__ import annotations

import gzip
import lzma
import zlib
from collections.abc import Callable
from typing import Any

import brotli
import lz4.frame  # type: ignore[import-untyped]
import zstandard

from services.warehouse.errors import CANNOT_DECOMPRESS, ClickHouseError

RESPONSE_ENCODINGS = ("lz4", "zstd", "gzip", "deflate", "br", "xz")

_TYPES = {
    "TabSeparated": "text/tab-separated-values", "TSV": "text/tab-separated-values",
    "TabSeparatedWithNames": "text/tab-separated-values",
    "TSVWithNames": "text/tab-separated-values", "CSV": "text/csv", "CSVWithNames": "text/csv",
    "JSON": "application/json", "JSONCompact": "application/json",
    "JSONEachRow": "application/x-ndjson", "JSONCompactEachRow": "application/x-ndjson",
}
_BINARY = frozenset({"Native", "RowBinary", "RowBinaryWithNamesAndTypes", "Parquet", "Arrow",
                     "ArrowStream", "ORC", "Avro", "MsgPack"})


def decode_body(data: bytes, encoding: str) -> bytes:
    """The request body with its Content-Encoding undone."""
    enc = encoding.strip().lower()
    try:
        if enc in ("", "identity"):
            return data
        if enc == "lz4":
            return _frames(data, lz4.frame.LZ4FrameDecompressor)
        if enc == "zstd":
            return _frames(data, zstandard.ZstdDecompressor().decompressobj)
        if enc in ("gzip", "x-gzip"):
            return gzip.decompress(data)
        if enc == "deflate":
            return zlib.decompress(data)
        if enc == "br":
            return bytes(brotli.decompress(data))
        if enc == "xz":
            return lzma.decompress(data, format=lzma.FORMAT_XZ)
    except Exception as e:  # every codec has its own error type
        raise ClickHouseError(CANNOT_DECOMPRESS,
                              f"DB::Exception: Cannot decompress {enc} body: {e}") from e
    raise ClickHouseError(CANNOT_DECOMPRESS, f"DB::Exception: Unknown Content-Encoding: {enc}")


def _frames(data: bytes, decompressor: Callable[[], Any]) -> bytes:
    """Undo a body of one or more concatenated frames (clients send a frame per block)."""
    out: list[bytes] = []
    while data:
        d = decompressor()
        out.append(d.decompress(data))
        if not d.eof:
            raise ValueError("truncated frame")
        data = d.unused_data
    return b"".join(out)


def response_encoding(accept: str) -> str | None:
    """The encoding to answer in: the fastest we write that Accept-Encoding lists."""
    asked = {part.split(";")[0].strip().lower() for part in accept.split(",")}
    return next((name for name in RESPONSE_ENCODINGS if name in asked), None)


def encode_body(data: bytes, encoding: str | None) -> bytes:
    if encoding == "lz4":
        return bytes(lz4.frame.compress(data))
    if encoding == "zstd":
        return zstandard.ZstdCompressor(level=3).compress(data)
    if encoding == "gzip":
        return gzip.compress(data, compresslevel=3)
    if encoding == "deflate":
        return zlib.compress(data, 3)
    if encoding == "br":
        return bytes(brotli.compress(data, quality=3))
    if encoding == "xz":
        return lzma.compress(data, format=lzma.FORMAT_XZ, preset=1)
    return data


def content_type(fmt: str) -> str:
    if fmt in _BINARY:
        return "application/octet-stream"
    return _TYPES.get(fmt, "text/plain") + "; charset=UTF-8"
