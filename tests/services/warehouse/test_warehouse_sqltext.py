"""The pure parts: reading SQL text, errors, bodies on the wire, credentials."""

from __future__ import annotations

import base64

import pytest

from services.warehouse import errors, sqltext, wire
from services.warehouse.auth import credentials


@pytest.mark.parametrize(("sql", "kind"), [
    ("SELECT 1", "SELECT"),
    ("  -- note\n/* c */ insert into t values (1)", "INSERT"),
    ("(SELECT 1) UNION ALL (SELECT 2)", "("),
    ("# hash comment\nDROP TABLE t", "DROP"),
    ("", ""),
])
def test_first_keyword(sql: str, kind: str) -> None:
    assert sqltext.first_keyword(sql) == kind


@pytest.mark.parametrize(("text", "expected"), [
    (b"INSERT INTO t (a, b) FORMAT Native\n\x0a\x02", ("INSERT INTO t (a, b)", "Native",
                                                       b"\x0a\x02")),
    (b"INSERT INTO t FORMAT CSV 1,2\n", ("INSERT INTO t", "CSV", b"1,2\n")),
    (b"INSERT INTO t SETTINGS insert_deduplication_token='FORMAT x' FORMAT TSV\n1\n",
     ("INSERT INTO t SETTINGS insert_deduplication_token='FORMAT x'", "TSV", b"1\n")),
    (b"INSERT INTO t VALUES (1, 'FORMAT CSV')", None),
    (b"INSERT INTO t SELECT * FROM u FORMAT CSV", None),
    (b"SELECT 1 FORMAT CSV", None),
])
def test_split_insert(text: bytes, expected: tuple[str, str, bytes] | None) -> None:
    got = sqltext.split_insert(text)
    assert (None if got is None else (got.statement, got.fmt, got.data)) == expected


@pytest.mark.parametrize(("sql", "fmt"), [
    ("SELECT 1 FORMAT JSONEachRow", "JSONEachRow"),
    ("SELECT 1\n FORMAT Native;  ", "Native"),
    ("SELECT 'FORMAT' AS f", None),
])
def test_trailing_format(sql: str, fmt: str | None) -> None:
    assert sqltext.trailing_format(sql) == fmt


def test_split_statements_keeps_semicolons_in_strings_and_drops_comments_only() -> None:
    script = "CREATE TABLE a (x String DEFAULT ';');\n-- only a comment;\n;SELECT 'a;b' -- c\n"
    assert sqltext.split_statements(script) == [
        "CREATE TABLE a (x String DEFAULT ';')", "SELECT 'a;b' -- c"]


@pytest.mark.parametrize(("sql", "changes"), [
    ("SET max_threads = 2", {"max_threads": "2"}),
    ("set a = 'x, y', b = [1, 2];", {"a": "'x, y'", "b": "[1, 2]"}),
])
def test_parse_set(sql: str, changes: dict[str, str]) -> None:
    assert sqltext.parse_set(sql) == changes


@pytest.mark.parametrize("sql", ["SET", "SET a", "SET 1x = 2", "SELECT 1"])
def test_parse_set_refuses_what_it_cannot_read(sql: str) -> None:
    with pytest.raises(sqltext.SqlTextError):
        sqltext.parse_set(sql)


@pytest.mark.parametrize(("text", "code", "status"), [
    ("Code: 62. DB::Exception: Syntax error: failed. (SYNTAX_ERROR)", 62, 400),
    ("Code: 164. DB::Exception: Code: 164. DB::Exception: Cannot modify. (READONLY) "
     "(version 26.9.2.1). (READONLY)", 164, 500),
    ("Code: 60. DB::Exception: Unknown table t. (UNKNOWN_TABLE)", 60, 404),
    ("something odd", errors.UNKNOWN_EXCEPTION, 500),
])
def test_engine_errors_keep_their_code(text: str, code: int, status: int) -> None:
    e = errors.from_engine(text)
    assert (e.code, e.status) == (code, status)
    assert e.body("1.0").startswith(f"Code: {code}. DB::Exception: ")
    assert e.body("1.0").count("Code:") == 1
    assert e.body("1.0").count("(version") == 1
    assert e.body("1.0").count("DB::Exception") == 1


@pytest.mark.parametrize(("encoding", "frames"), [
    ("lz4", 2), ("zstd", 2), ("gzip", 2), ("deflate", 1), ("identity", 1)])
def test_bodies_round_trip_in_every_encoding(encoding: str, frames: int) -> None:
    data = b"INSERT INTO t FORMAT CSV\n" + b"1,2\n" * 1000
    packed = wire.encode_body(data, encoding)
    assert (packed != data) == (encoding != "identity")
    # clients that stream blocks send one frame per block, back to back
    assert wire.decode_body(packed * frames, encoding) == data * frames


def test_a_corrupt_body_is_error_271() -> None:
    with pytest.raises(errors.ClickHouseError) as e:
        wire.decode_body(b"not lz4 at all", "lz4")
    assert e.value.code == errors.CANNOT_DECOMPRESS


@pytest.mark.parametrize(("accept", "chosen"), [
    ("gzip", "gzip"), ("deflate, gzip, br, zstd", "zstd"), ("lz4,zstd,br,gzip", "lz4"),
    ("br", "br"), ("xz", "xz"), ("compress, identity", None), ("", None),
])
def test_response_encoding(accept: str, chosen: str | None) -> None:
    assert wire.response_encoding(accept) == chosen


@pytest.mark.parametrize(("headers", "params", "expected"), [
    ({}, {}, ("default", "")),
    ({"Authorization": "Basic " + base64.b64encode(b"analyst:pw").decode()}, {},
     ("analyst", "pw")),
    ({"X-ClickHouse-User": "analyst", "X-ClickHouse-Key": "pw"}, {}, ("analyst", "pw")),
    ({}, {"user": "analyst", "password": "pw"}, ("analyst", "pw")),
])
def test_credentials(headers: dict[str, str], params: dict[str, str],
                     expected: tuple[str, str]) -> None:
    assert credentials(headers, params) == expected


@pytest.mark.parametrize(("sql", "expected"), [
    ("SELECT currentUser()", "SELECT ('ann' AS `currentUser()`)"),
    ("SELECT user ( ), 'user()' -- user()", "SELECT ('ann' AS `user ( )`), 'user()' -- user()"),
    ("SELECT t.user(), user FROM t", "SELECT t.user(), user FROM t"),
    ("SELECT CURRENT_USER()", "SELECT ('ann' AS `CURRENT_USER()`)"),
])
def test_current_user_is_written_in(sql: str, expected: str) -> None:
    assert sqltext.with_current_user(sql.encode(), "ann").decode() == expected


@pytest.mark.parametrize(("sql", "count"), [
    ("SELECT 1; SELECT 2", 2), ("SELECT ';'", 1), ("SELECT $$ ; $$", 1),
    ("SELECT $$ ' $$; SELECT 2", 2), ("SELECT $a$ ; $a$; SELECT 1", 2), ("SELECT 1 -- ;", 1),
])
def test_statements_split_as_the_engine_reads_them(sql: str, count: int) -> None:
    assert len(sqltext.split_statements(sql)) == count
