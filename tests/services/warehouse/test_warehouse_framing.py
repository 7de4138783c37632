"""compress=1 / decompress=1 (ClickHouse's compressed-block framing), br and xz bodies, and the
summary header, over HTTP; the framing itself as pure functions."""

from __future__ import annotations

import json
import lzma
import os

import brotli
import pytest

from services.warehouse import framing, native
from services.warehouse.errors import ClickHouseError
from tests.services.warehouse.conftest import ANALYST_PASSWORD, Warehouse
from tests.services.warehouse.test_warehouse_http import call

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("method", [framing.LZ4, framing.ZSTD, framing.NONE])
@pytest.mark.parametrize("size", [0, 1, framing.BLOCK_SIZE, 3 * framing.BLOCK_SIZE + 7])
def test_framing_round_trips(method: int, size: int) -> None:
    data = (os.urandom(64) * (size // 64 + 1))[:size]
    framed = framing.compress(data, method)
    assert framing.decompress(framed) == data
    assert framed[:0] == b"" and (size == 0) == (framed == b"")


def test_a_block_names_its_method_and_sizes() -> None:
    framed = framing.compress(b"abc" * 100, framing.LZ4)
    assert framed[16] == 0x82
    assert int.from_bytes(framed[17:21], "little") == len(framed) - 16
    assert int.from_bytes(framed[21:25], "little") == 300


@pytest.mark.parametrize(("damage", "code"), [
    (lambda b: b[:-1], 271),                              # cut short
    (lambda b: b[:30] + bytes([b[30] ^ 1]) + b[31:], 40),  # a flipped bit: checksum
    (lambda b: b[:16] + b"\x55" + b[17:], 40),             # the method byte changed
])
def test_damaged_blocks_are_refused(damage: object, code: int) -> None:
    framed = framing.compress(b"gpufleet" * 1000, framing.LZ4)
    with pytest.raises(ClickHouseError) as e:
        framing.decompress(damage(framed))  # type: ignore[operator]
    assert e.value.code == code



@pytest.mark.parametrize("method", ["LZ4", "ZSTD"])
def test_compress_1_frames_the_answer(warehouse: Warehouse, method: str) -> None:
    reply = call(warehouse, {"query": "SELECT number FROM numbers(300000)", "compress": "1",
                             "network_compression_method": method})
    assert reply.status == 200
    assert reply.body[16] == framing.METHODS[method]
    text = framing.decompress(reply.body)
    assert text.splitlines()[-1] == b"299999" and len(text.splitlines()) == 300000


@pytest.mark.parametrize("method", [framing.LZ4, framing.ZSTD])
def test_decompress_1_reads_a_framed_body(warehouse: Warehouse, method: int) -> None:
    table = f"framed_{method}"
    call(warehouse, body=f"CREATE TABLE IF NOT EXISTS {table} (a UInt32) ENGINE = Memory "
         "COMMENT 'test'".encode())
    rows = b"".join(b"%d\n" % i for i in range(50000))
    done = call(warehouse, {"query": f"INSERT INTO {table} FORMAT TSV", "decompress": "1"},
                body=framing.compress(rows, method))
    assert done.status == 200, done.body
    assert call(warehouse, {"query": f"SELECT count(), sum(a) FROM {table}"}).body == \
        b"50000\t1249975000\n"
    broken = framing.compress(rows, method)
    broken = broken[:40] + bytes([broken[40] ^ 0xFF]) + broken[41:]
    bad = call(warehouse, {"query": f"INSERT INTO {table} FORMAT TSV", "decompress": "1"},
               body=broken)
    assert bad.headers["X-ClickHouse-Exception-Code"] == "40"


@pytest.mark.parametrize(("encoding", "pack"), [
    ("br", brotli.compress), ("xz", lambda b: lzma.compress(b, format=lzma.FORMAT_XZ)),
])
def test_br_and_xz_bodies(warehouse: Warehouse, encoding: str, pack: object) -> None:
    reply = call(warehouse, body=pack(b"SELECT 40 + 2"),  # type: ignore[operator]
                 headers={"Content-Encoding": encoding})
    assert (reply.status, reply.body) == (200, b"42\n")


def test_the_summary_counts_the_request_in_nanoseconds(warehouse: Warehouse) -> None:
    reply = call(warehouse, {"query": "SELECT sleep(0.2)"})
    elapsed_ns = int(json.loads(reply.headers["X-ClickHouse-Summary"])["elapsed_ns"])
    assert 200_000_000 <= elapsed_ns < 60_000_000_000


@pytest.mark.parametrize(("revision", "expected"), [
    ("0", b"\x01\x01\x01n\x05UInt8\x07"),
    ("54405", b"\x01\x00\x02\xff\xff\xff\xff\x00" + b"\x01\x01\x01n\x05UInt8\x07"),
    ("54460", b"\x01\x00\x02\xff\xff\xff\xff\x00" + b"\x01\x01\x01n\x05UInt8\x00\x07"),
])
def test_native_output_follows_the_client_protocol_version(warehouse: Warehouse, revision: str,
                                                           expected: bytes) -> None:
    reply = call(warehouse, {"query": "SELECT 7::UInt8 AS n FORMAT Native",
                             "client_protocol_version": revision})
    assert reply.body == expected


def test_native_input_is_revision_0_whatever_the_client_protocol_version(
        warehouse: Warehouse) -> None:
    call(warehouse, body=b"CREATE TABLE IF NOT EXISTS native_rev (s String, a Array(UInt8)) "
                         b"ENGINE = Memory COMMENT 'test'")
    block = (b"\x02\x02" + b"\x01s\x06String" + b"\x02hi\x03you"
             + b"\x01a\x0cArray(UInt8)" + (1).to_bytes(8, "little")
             + (3).to_bytes(8, "little") + b"\x01\x02\x03")
    done = call(warehouse, {"query": "INSERT INTO native_rev FORMAT Native",
                            "client_protocol_version": "54460"}, body=block)
    assert done.status == 200, done.body
    assert call(warehouse, {"query": "SELECT s, a FROM native_rev ORDER BY s"}).body == \
        b"hi\t[1]\nyou\t[2,3]\n"


def _multipart(parts: dict[str, tuple[str | None, bytes]]) -> tuple[bytes, str]:
    boundary = "gpufleetext"
    out = b""
    for name, (filename, data) in parts.items():
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename
                                                      else "")
        out += (f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n").encode() + data \
            + b"\r\n"
    return out + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


@pytest.mark.parametrize("who", [{}, {"user": "analyst", "password": ANALYST_PASSWORD}])
def test_external_data_is_a_temporary_table_for_one_query(warehouse: Warehouse,
                                                          who: dict[str, str]) -> None:
    body, ctype = _multipart({"ids": ("ids.tsv", b"1\ta\n2\tb\n3\tc\n")})
    reply = call(warehouse, {**who, "query": "SELECT count(), groupArray(s) FROM ids",
                             "ids_structure": "n UInt8, s String"}, body=body,
                 headers={"Content-Type": ctype})
    assert (reply.status, reply.body) == (200, b"3\t['a','b','c']\n"), reply.body
    typed = call(warehouse, {**who, "query": "SELECT sum(_1) FROM ids",
                             "ids_types": "UInt8,String"}, body=body,
                 headers={"Content-Type": ctype})
    assert typed.body == b"6\n"
    after = call(warehouse, {**who, "query": "SELECT count() FROM ids"})
    assert after.headers["X-ClickHouse-Exception-Code"] == "60"


@pytest.mark.parametrize("structure", [
    "a String DEFAULT '(' ) ENGINE = File(TSV, '/etc/passwd') -- ",
    "a String) ENGINE = File(TSV, '/etc/passwd'",
    "a String; SELECT 1",
])
def test_an_external_structure_cannot_leave_its_column_list(warehouse: Warehouse,
                                                            structure: str) -> None:
    body, ctype = _multipart({"t": ("t.tsv", b"x\n")})
    reply = call(warehouse, {"query": "SELECT * FROM t", "t_structure": structure}, body=body,
                 headers={"Content-Type": ctype})
    assert reply.status != 200 and b"root:" not in reply.body


def test_clickhouse_connect_external_data(warehouse: Warehouse) -> None:
    from clickhouse_connect.driver.external import ExternalData

    client = warehouse.analyst()
    data = ExternalData(file_name="ext.csv", data=b"1,x\n2,y\n", structure="n UInt8, s String",
                        fmt="CSV")
    got = client.query("SELECT sum(n), max(s) FROM ext", external_data=data)
    assert got.result_rows == [(3, "y")]
    client.close()


RICH = ("SELECT number AS n, toString(number) AS s, [number, 1] AS a, "
        "if(number % 2 = 0, NULL, number) AS nn, (1, 'x') AS t, map('k', number) AS m, "
        "toDecimal64(1.5, 3) AS d, toLowCardinality(toString(number % 300)) AS lc, "
        "CAST(if(number % 3 = 0, NULL, 'x') AS LowCardinality(Nullable(String))) AS lcn, "
        "toDateTime64('2024-01-01 00:00:00', 3, 'UTC') AS ts, toFixedString('ab', 2) AS fs, "
        "[[1, 2], [3]] AS aa, CAST((1, 'a') AS Tuple(x UInt8, y String)) AS nt "
        "FROM numbers(150000) FORMAT Native")


def test_native_revisions_differ_only_in_block_info_and_serialization_bytes(
        warehouse: Warehouse) -> None:
    plain = call(warehouse, {"query": RICH}).body
    for revision in (54405, 54460):
        framed = call(warehouse, {"query": RICH, "client_protocol_version": str(revision)}).body
        assert len(framed) > len(plain)
        assert native.from_client(framed, revision) == plain
