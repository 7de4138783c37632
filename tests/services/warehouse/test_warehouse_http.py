"""Plain HTTP, as curl and other ClickHouse HTTP clients use the endpoint."""

from __future__ import annotations

import base64
import gzip
import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field

import pytest

from tests.services.warehouse.conftest import ANALYST_PASSWORD, Warehouse

pytestmark = pytest.mark.integration


@dataclass
class Reply:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


def call(warehouse: Warehouse, params: dict[str, str] | None = None, body: bytes | None = None,
         headers: dict[str, str] | None = None, path: str = "") -> Reply:
    url = warehouse.base + path + ("?" + urllib.parse.urlencode(params) if params else "")
    req = urllib.request.Request(url, data=body, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return Reply(r.status, r.read(), dict(r.headers))
    except urllib.error.HTTPError as e:
        return Reply(e.code, e.read(), dict(e.headers))


@pytest.mark.parametrize(("params", "expected"), [
    ({"query": "SELECT number, toString(number) FROM numbers(2)"}, b"0\t0\n1\t1\n"),
    ({"query": "SELECT number AS n FROM numbers(2) FORMAT CSV"}, b"0\n1\n"),
    ({"query": "SELECT number AS n, 'a' AS s FROM numbers(2) FORMAT JSONEachRow"},
     b'{"n":0,"s":"a"}\n{"n":1,"s":"a"}\n'),
    ({"query": "SELECT 1 AS n", "default_format": "CSVWithNames"}, b'"n"\n1\n'),
    ({"query": "SELECT {x:UInt8} * 2", "param_x": "21"}, b"42\n"),
    ({"query": "SELECT currentDatabase()", "database": "system"}, b"system\n"),
])
def test_get_queries_in_each_format(warehouse: Warehouse, params: dict[str, str],
                                    expected: bytes) -> None:
    reply = call(warehouse, params)
    assert (reply.status, reply.body) == (200, expected)


def test_post_body_and_query_parameter_are_one_statement(warehouse: Warehouse) -> None:
    reply = call(warehouse, {"query": "SELECT 1 +"}, body=b"2 FORMAT TSV")
    assert reply.body == b"3\n"
    csv = call(warehouse, {"query": "SELECT 'x' AS s, 2 AS n FORMAT CSV"})
    assert (csv.body, csv.headers["Content-Type"]) == (b'"x",2\n', "text/csv; charset=UTF-8")


def test_insert_with_data_in_the_body(warehouse: Warehouse) -> None:
    table = "http_insert_t"
    call(warehouse, body=f"CREATE TABLE IF NOT EXISTS {table} (a UInt32, s String) "
         "ENGINE = MergeTree ORDER BY a".encode())
    call(warehouse, {"query": f"INSERT INTO {table} FORMAT CSV"}, body=b"1,one\n2,two\n")
    call(warehouse, body=f'INSERT INTO {table} FORMAT JSONEachRow {{"a":3,"s":"three"}}'.encode())
    call(warehouse, body=f"INSERT INTO {table} VALUES (4, 'four')".encode())
    got = call(warehouse, {"query": f"SELECT a, s FROM {table} ORDER BY a FORMAT CSV"}).body
    assert got == b'1,"one"\n2,"two"\n3,"three"\n4,"four"\n'


def test_gzip_answer_when_asked(warehouse: Warehouse) -> None:
    reply = call(warehouse, {"query": "SELECT number FROM numbers(1000)"},
                 headers={"Accept-Encoding": "gzip"})
    assert reply.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(reply.body).splitlines()[-1] == b"999"


@pytest.mark.parametrize(("query", "code", "status"), [
    ("SELEC 1", 62, 400), ("SELECT * FROM nowhere", 60, 404), ("", 62, 400),
])
def test_errors_the_clickhouse_way(warehouse: Warehouse, query: str, code: int,
                                   status: int) -> None:
    reply = call(warehouse, body=query.encode())
    assert reply.status == status
    assert reply.headers["X-ClickHouse-Exception-Code"] == str(code)
    assert reply.body.startswith(f"Code: {code}. DB::Exception:".encode())


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.mark.parametrize(("params", "headers", "status"), [
    ({"user": "analyst", "password": ANALYST_PASSWORD}, {}, 200),
    ({}, {"X-ClickHouse-User": "analyst", "X-ClickHouse-Key": ANALYST_PASSWORD}, 200),
    ({}, _basic("analyst", ANALYST_PASSWORD), 200),
    ({}, _basic("analyst", "nope"), 403),
    ({"user": "nobody"}, {}, 403),
    # header bytes that are not UTF-8 (urllib sends the str as latin-1): a failed login
    ({}, {"X-ClickHouse-User": "analyst", "X-ClickHouse-Key": "\xff\xfe"}, 403),
    ({}, {"X-ClickHouse-User": "\xff\xfe", "X-ClickHouse-Key": ANALYST_PASSWORD}, 403),
    # Basic credentials that do not decode are refused, never taken as `default`
    ({}, {"Authorization": "Basic !!!not-base64"}, 403),
    ({}, {"Authorization": "Basic /w=="}, 403),  # base64 of a byte that is not UTF-8
    ({}, {"Authorization": "Basic !!!"}, 403),  # decodes to nothing: not `default` either
    ({}, {"Authorization": "Bearer x"}, 403),
    # credentials given two ways at once are refused, as a ClickHouse server does
    ({}, {**_basic("analyst", ANALYST_PASSWORD), "X-ClickHouse-User": "default"}, 403),
    ({"user": "default"}, _basic("analyst", ANALYST_PASSWORD), 403),
    ({"user": "default"}, {"X-ClickHouse-User": "analyst", "X-ClickHouse-Key": ANALYST_PASSWORD},
     403),
])
def test_users_and_passwords(warehouse: Warehouse, params: dict[str, str],
                             headers: dict[str, str], status: int) -> None:
    reply = call(warehouse, {"query": "SELECT 1", **params}, headers=headers)
    assert reply.status == status
    if status != 200:
        assert reply.headers["X-ClickHouse-Exception-Code"] == "516"


@pytest.mark.parametrize("params", [
    {"query": "INSERT INTO alerts (alert_id) FORMAT CSV"},  # body below
    {"query": "SELECT 1", "readonly": "0"},
    {"query": "SELECT 1", "readonly": "1"},
])
def test_the_analyst_is_read_only_over_http_too(warehouse: Warehouse,
                                               params: dict[str, str]) -> None:
    reply = call(warehouse, {**params, "user": "analyst", "password": ANALYST_PASSWORD},
                 body=b"x\n")
    # READONLY is 500 in ClickHouse's own code-to-status table
    assert (reply.status, reply.headers["X-ClickHouse-Exception-Code"]) == (500, "164")
    assert reply.body.count(b"DB::Exception") == 1


def test_the_analyst_may_set_query_level_settings(warehouse: Warehouse) -> None:
    reply = call(warehouse, {"query": "SELECT getSetting('max_threads'), currentUser()",
                             "max_threads": "3", "user": "analyst",
                             "password": ANALYST_PASSWORD})
    assert (reply.status, reply.body) == (200, b"3\tanalyst\n")


def test_get_is_read_only_and_ping_answers(warehouse: Warehouse) -> None:
    reply = call(warehouse, {"query": "CREATE TABLE by_get (a UInt8) ENGINE = Memory"})
    assert reply.headers["X-ClickHouse-Exception-Code"] == "164"
    assert call(warehouse, path="ping").body == b"Ok.\n"
    assert json.loads(call(warehouse, path="healthz").body) == {"status": "ok"}


def test_query_in_a_multipart_form(warehouse: Warehouse) -> None:
    boundary = "gpufleetboundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"query\"\r\n\r\n"
            f"SELECT {{n:UInt8}} + 1\r\n--{boundary}\r\nContent-Disposition: form-data; "
            f"name=\"param_n\"\r\n\r\n41\r\n--{boundary}--\r\n").encode()
    reply = call(warehouse, body=body,
                 headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert (reply.status, reply.body) == (200, b"42\n")


def test_use_in_a_session_changes_its_database(warehouse: Warehouse) -> None:
    session = {"session_id": "use-test"}
    assert call(warehouse, session, body=b"USE system").status == 200
    assert call(warehouse, session, body=b"SELECT currentDatabase()").body == b"system\n"
    assert call(warehouse, body=b"SELECT currentDatabase()").body == b"default\n"
    missing = call(warehouse, {"session_id": "nope", "session_check": "1"}, body=b"SELECT 1")
    assert missing.headers["X-ClickHouse-Exception-Code"] == "372"
