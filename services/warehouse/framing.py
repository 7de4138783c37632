"""ClickHouse's compressed-block framing, as ``compress=1`` (the response) and ``decompress=1``
(the request body) ask for over HTTP.

A body is a sequence of blocks; each is a 16-byte CityHash128 checksum of what follows it, then
a 9-byte header (method byte, compressed size including the header, uncompressed size, both
UInt32 little endian), then the compressed bytes: an LZ4 block (0x82), a ZSTD frame (0x90), or
the bytes as they are (0x02). Pure functions, bytes in and out.
"""

from __future__ import annotations

import struct

import lz4.block  # type: ignore[import-untyped]
import zstandard
from clickhouse_cityhash.cityhash import CityHash128  # type: ignore[import-untyped]

from services.warehouse.errors import (
    CANNOT_DECOMPRESS,
    CHECKSUM_DOESNT_MATCH,
    TOO_LARGE_SIZE_COMPRESSED,
    UNKNOWN_COMPRESSION_METHOD,
    ClickHouseError,
)

NONE, LZ4, ZSTD = 0x02, 0x82, 0x90
METHODS = {"NONE": NONE, "LZ4": LZ4, "LZ4HC": LZ4, "ZSTD": ZSTD}
BLOCK_SIZE = 1 << 20  # uncompressed bytes per block, as ClickHouse's default buffer
MAX_BLOCK = 1 << 30
_HEADER = struct.Struct("<BII")
_MASK = (1 << 64) - 1


def checksum(block: bytes) -> bytes:
    """CityHash128 (v1.0.2, ClickHouse's) of a block, as the two UInt64 it writes."""
    h = CityHash128(block)
    return struct.pack("<QQ", (h >> 64) & _MASK, h & _MASK)


def method_of(name: str) -> int:
    """The method byte for ``network_compression_method`` (LZ4 when not given)."""
    method = METHODS.get((name or "LZ4").strip("'").upper())
    if method is None:
        raise ClickHouseError(UNKNOWN_COMPRESSION_METHOD, "DB::Exception: Unknown compression "
                              f"method: {name} (LZ4, ZSTD and NONE are supported)")
    return method


def compress(data: bytes, method: int = LZ4, level: int = 1) -> bytes:
    """``data`` as framed blocks of at most BLOCK_SIZE uncompressed bytes each."""
    out: list[bytes] = []
    for start in range(0, len(data), BLOCK_SIZE):
        chunk = data[start:start + BLOCK_SIZE]
        if method == LZ4:
            packed = lz4.block.compress(chunk, store_size=False)
        elif method == ZSTD:
            packed = zstandard.ZstdCompressor(level=level).compress(chunk)
        else:
            packed = chunk
        block = _HEADER.pack(method, _HEADER.size + len(packed), len(chunk)) + packed
        out += [checksum(block), block]
    return b"".join(out)


def decompress(data: bytes, *, verify: bool = True) -> bytes:
    """Undo ``compress``: every block's checksum is checked unless ``verify`` is False
    (``http_native_compression_disable_checksumming_on_decompress``)."""
    out: list[bytes] = []
    i = 0
    while i < len(data):
        if len(data) - i < 16 + _HEADER.size:
            raise _broken("a block is cut short in its header")
        method, size, plain = _HEADER.unpack_from(data, i + 16)
        if size < _HEADER.size or size > MAX_BLOCK or plain > MAX_BLOCK:
            raise ClickHouseError(TOO_LARGE_SIZE_COMPRESSED, "DB::Exception: Too large size "
                                  f"of a compressed block: {size} (uncompressed {plain})")
        block = data[i + 16:i + 16 + size]
        if len(block) != size:
            raise _broken(f"a block of {size} bytes has only {len(block)}")
        if verify and checksum(block) != data[i:i + 16]:
            raise ClickHouseError(CHECKSUM_DOESNT_MATCH, "DB::Exception: Checksum doesn't "
                                  "match: corrupted data in a compressed block")
        out.append(_unpack(method, block[_HEADER.size:], plain))
        i += 16 + size
    return b"".join(out)


def _unpack(method: int, packed: bytes, plain: int) -> bytes:
    try:
        if method == LZ4:
            data = bytes(lz4.block.decompress(packed, uncompressed_size=plain))
        elif method == ZSTD:
            data = zstandard.ZstdDecompressor().decompress(packed, max_output_size=plain)
        elif method == NONE:
            data = packed
        else:
            raise ClickHouseError(UNKNOWN_COMPRESSION_METHOD, "DB::Exception: Unknown "
                                  f"compression method byte: {method:#04x}")
    except ClickHouseError:
        raise
    except Exception as e:  # each codec has its own error type
        raise _broken(str(e)) from e
    if len(data) != plain:
        raise _broken(f"a block gave {len(data)} bytes, its header says {plain}")
    return data


def _broken(why: str) -> ClickHouseError:
    return ClickHouseError(CANNOT_DECOMPRESS, f"DB::Exception: Cannot decompress: {why}")
