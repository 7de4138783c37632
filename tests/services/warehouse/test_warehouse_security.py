"""The analyst reads the warehouse's own tables and nothing else, within its limits; the writer
reaches files only inside the warehouse's user_files folder; sessions keep to themselves."""

from __future__ import annotations

import base64
import concurrent.futures
import socket
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.warehouse.config import WarehouseSettings, exposure_problem
from tests.services.warehouse.conftest import (
    ANALYST_MAX_QUERIES,
    ANALYST_PASSWORD,
    Warehouse,
)
from tests.services.warehouse.test_warehouse_http import Reply, call

pytestmark = pytest.mark.integration
ANALYST = {"user": "analyst", "password": ANALYST_PASSWORD}
HEAVY = "SELECT count() FROM numbers(1000000000000) WHERE number % 7 = 3 /* {tag} */"


def analyst(warehouse: Warehouse, sql: str, **params: str) -> Reply:
    return call(warehouse, {**ANALYST, **params}, body=sql.encode())


@pytest.mark.parametrize(("sql", "code"), [
    ("SELECT 'x' INTO OUTFILE '{out}' TRUNCATE FORMAT TSVRaw", 358),
    ("SELECT 'x' INTO OUTFILE '{out}' APPEND FORMAT TSVRaw", 358),
    ("SELECT * FROM file('/etc/passwd', 'LineAsString')", 497),
    ("SELECT * FROM file('x.csv')", 497),
    ("SELECT file('/etc/hostname')", 497),
    ("SELECT * FROM url('http://127.0.0.1:1/', CSV, 'a String')", 497),
    ("SELECT * FROM executable('cat', TSV, 'a String')", 497),
    ("SELECT * FROM s3('http://127.0.0.1:1/b/k', CSV, 'a String')", 497),
    ("SELECT * FROM python('x')", 497),
    ("SELECT * FROM filesystem('/')", 497),
    ("SELECT filesystemAvailable()", 497),
    ("SELECT dictGet('d', 'a', toUInt64(1))", 497),
    ("SELECT * FROM dictionary('d')", 497),
    ("SELECT * FROM remote('127.0.0.1:1', system.one)", 497),
    ("SELECT 1 FORMAT Template", 497),
    ("SELECT 1; SELECT * FROM file('/etc/passwd', 'LineAsString')", 62),
    ("SELECT $$ ' $$; SELECT * FROM file('/etc/passwd', 'LineAsString') -- '", 62),
    ("WITH '/etc/passwd' AS p SELECT * FROM file(p, 'LineAsString')", 497),
    ("DESCRIBE file('/etc/passwd', 'LineAsString')", 497),
])
def test_the_analyst_reaches_no_file_and_nothing_outside(warehouse: Warehouse, tmp_path: Path,
                                                        sql: str, code: int) -> None:
    out = tmp_path / "written-by-analyst"
    reply = analyst(warehouse, sql.format(out=out))
    assert (reply.status, reply.headers.get("X-ClickHouse-Exception-Code")) != (200, None)
    assert reply.headers["X-ClickHouse-Exception-Code"] == str(code), reply.body
    assert b"root:" not in reply.body
    assert not out.exists()


@pytest.mark.parametrize("setting", ["format_schema", "format_template_resultset"])
def test_settings_that_name_files_are_refused(warehouse: Warehouse, setting: str) -> None:
    reply = analyst(warehouse, "SELECT 1", **{setting: "/etc/passwd"})
    assert reply.headers["X-ClickHouse-Exception-Code"] == "497"


@pytest.mark.parametrize(("sql", "code"), [
    ("SELECT * FROM file('/etc/passwd', 'LineAsString')", 291),
    ("SELECT * FROM file('../../../../etc/passwd', 'LineAsString')", 291),
    ("SELECT file('/etc/hostname')", 291),
    ("SELECT 'x' INTO OUTFILE '{out}' FORMAT TSVRaw", 358),
    ("INSERT INTO FUNCTION file('{out}', 'TSV', 'a String') VALUES ('x')", 291),
    ("CREATE TABLE w_file (a String) ENGINE = File(TSV, '/etc/passwd')", 291),
    ("CREATE TABLE w_url (a String) ENGINE = URL('http://127.0.0.1:1/', CSV)", 497),
    ("SELECT * FROM executable('cat', TSV, 'a String')", 497),
    ("CREATE DICTIONARY w_dict (a UInt64) PRIMARY KEY a "
     "SOURCE(EXECUTABLE(command 'cat' format 'TSV')) LAYOUT(FLAT()) LIFETIME(0)", 497),
])
def test_the_writer_reaches_files_only_in_user_files(warehouse: Warehouse, tmp_path: Path,
                                                     sql: str, code: int) -> None:
    out = tmp_path / "written-by-writer"
    reply = call(warehouse, body=sql.format(out=out).encode())
    assert reply.headers.get("X-ClickHouse-Exception-Code") == str(code), reply.body
    assert b"root:" not in reply.body
    assert not out.exists()


def test_the_writer_reads_and_writes_its_user_files(warehouse: Warehouse) -> None:
    name = f"export-{uuid.uuid4().hex[:8]}.tsv"
    done = call(warehouse, body=f"INSERT INTO FUNCTION file('{name}', 'TSV', 'a String') "
                               "VALUES ('kept')".encode())
    assert done.status == 200, done.body
    assert (warehouse.data / "user_files" / name).read_text() == "kept\n"
    back = call(warehouse, body=f"SELECT * FROM file('{name}', 'TSV', 'a String')".encode())
    assert back.body == b"kept\n"


def test_current_user_is_who_asks(warehouse: Warehouse) -> None:
    assert analyst(warehouse, "SELECT currentUser(), user()").body == b"analyst\tanalyst\n"
    assert call(warehouse, body=b"SELECT currentUser()").body == b"default\n"
    basic = base64.b64encode(f"analyst:{ANALYST_PASSWORD}".encode()).decode()
    reply = call(warehouse, body=b"SELECT currentUser() AS u FORMAT CSVWithNames",
                 headers={"Authorization": f"Basic {basic}"})
    assert reply.body == b'"u"\n"analyst"\n'


# --- limits: time, concurrency, a client that goes away ------------------------------------

def _open_query(warehouse: Warehouse, sql: str, params: dict[str, str]) -> socket.socket:
    """Send a POST and leave the answer unread: the caller closes the socket to go away."""
    sock = socket.create_connection(("127.0.0.1", warehouse.port), timeout=30)
    body = sql.encode()
    sock.sendall((f"POST /?{urllib.parse.urlencode(params)} HTTP/1.1\r\nHost: x\r\n"
                  f"Content-Length: {len(body)}\r\n\r\n").encode() + body)
    return sock


def _running(warehouse: Warehouse, tag: str) -> int:
    reply = call(warehouse, body=f"SELECT count() FROM system.processes WHERE query LIKE "
                                 f"'%{tag}%' AND query NOT LIKE '%system.processes%'".encode())
    return int(reply.body)


def _wait_until(predicate: object, timeout_s: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.2)
    return False


@pytest.fixture
def heavy_analyst_queries(warehouse: Warehouse) -> Iterator[tuple[str, list[socket.socket]]]:
    """The analyst's allowance of heavy queries, running; they are abandoned at the end."""
    tag = f"heavy-{uuid.uuid4().hex[:8]}"
    socks = [_open_query(warehouse, HEAVY.format(tag=tag), {**ANALYST, "max_threads": "1"})
             for _ in range(ANALYST_MAX_QUERIES)]
    try:
        assert _wait_until(lambda: _running(warehouse, tag) == ANALYST_MAX_QUERIES)
        yield tag, socks
    finally:
        for sock in socks:
            sock.close()
        _wait_until(lambda: _running(warehouse, tag) == 0)


def test_a_query_stops_when_its_client_goes_away(
        warehouse: Warehouse, heavy_analyst_queries: tuple[str, list[socket.socket]]) -> None:
    tag, socks = heavy_analyst_queries
    for sock in socks:
        sock.close()
    assert _wait_until(lambda: _running(warehouse, tag) == 0, timeout_s=10)


def test_the_analyst_has_a_limit_of_queries_and_writes_do_not_wait(
        warehouse: Warehouse, heavy_analyst_queries: tuple[str, list[socket.socket]]) -> None:
    extra = analyst(warehouse, "SELECT 1")
    assert extra.headers["X-ClickHouse-Exception-Code"] == "202"
    table = f"w_{uuid.uuid4().hex[:8]}"
    create = f"CREATE TABLE {table} (a UInt8) ENGINE = Memory COMMENT 'test'"
    assert call(warehouse, body=create.encode()).status == 200
    with concurrent.futures.ThreadPoolExecutor(8) as pool:  # writes and reads of others
        writes = [pool.submit(call, warehouse, {"query": f"INSERT INTO {table} FORMAT CSV"},
                              f"{i}\n".encode()) for i in range(8)]
        assert all(f.result(timeout=60).status == 200 for f in writes)
    assert call(warehouse, {"query": f"SELECT count() FROM {table}"}).body == b"8\n"
    assert call(warehouse, {"query": "SELECT 1"}).body == b"1\n"  # a GET of the writer


def test_the_analyst_has_a_time_limit_it_cannot_lift(warehouse: Warehouse) -> None:
    tag = f"slow-{uuid.uuid4().hex[:8]}"
    reply = analyst(warehouse, HEAVY.format(tag=tag), max_threads="1")
    assert reply.headers["X-ClickHouse-Exception-Code"] == "159"
    for value in ("0", "100000"):
        lifted = analyst(warehouse, "SELECT 1", max_execution_time=value)
        assert lifted.headers["X-ClickHouse-Exception-Code"] == "452"
    assert analyst(warehouse, "SELECT 1", max_execution_time="2").body == b"1\n"


# --- sessions ----------------------------------------------------------------------------

@pytest.mark.parametrize("who", [{}, ANALYST])
def test_a_session_keeps_its_temporary_table_to_itself(warehouse: Warehouse,
                                                       who: dict[str, str]) -> None:
    mine = {**who, "session_id": f"s-{uuid.uuid4().hex[:8]}"}
    if who:  # the analyst may not create tables: its temporary data comes from the writer's
        owner = {"session_id": mine["session_id"]}
        other_user = ANALYST | {"session_id": mine["session_id"]}
    else:
        owner, other_user = mine, ANALYST | {"session_id": mine["session_id"]}
    made = call(warehouse, owner, body=b"CREATE TEMPORARY TABLE tmp_s (a UInt8)")
    assert made.status == 200, made.body
    assert call(warehouse, owner, body=b"INSERT INTO tmp_s VALUES (7)").status == 200
    for _ in range(8):
        assert call(warehouse, owner, body=b"SELECT a FROM tmp_s").body == b"7\n"
        other = call(warehouse, {"session_id": "another"}, body=b"SELECT a FROM tmp_s")
        assert other.headers["X-ClickHouse-Exception-Code"] == "60"
        plain = call(warehouse, body=b"SELECT a FROM tmp_s")
        assert plain.headers["X-ClickHouse-Exception-Code"] == "60"
        stranger = call(warehouse, other_user, body=b"SELECT a FROM tmp_s")
        assert stranger.headers["X-ClickHouse-Exception-Code"] == "60"


def test_a_temporary_table_needs_a_session(warehouse: Warehouse) -> None:
    reply = call(warehouse, body=b"CREATE TEMPORARY TABLE tmp_nosession (a UInt8)")
    assert reply.headers["X-ClickHouse-Exception-Code"] == "372"


def test_one_request_at_a_time_in_a_session(warehouse: Warehouse) -> None:
    session = {"session_id": f"busy-{uuid.uuid4().hex[:8]}"}
    tag = f"sess-{uuid.uuid4().hex[:8]}"
    sock = _open_query(warehouse, HEAVY.format(tag=tag), {**session, "max_threads": "1"})
    try:
        assert _wait_until(lambda: _running(warehouse, tag) == 1)
        assert call(warehouse, session, body=b"SELECT 1").headers[
            "X-ClickHouse-Exception-Code"] == "373"
    finally:
        sock.close()
    assert _wait_until(lambda: _running(warehouse, tag) == 0)
    assert _wait_until(lambda: call(warehouse, session, body=b"SELECT 1").body == b"1\n")


# --- secure by default -------------------------------------------------------------------

@pytest.mark.parametrize(("host", "writer_pw", "analyst_pw", "refused"), [
    ("127.0.0.1", "", "", False), ("localhost", "", "", False), ("::1", "", "", False),
    ("0.0.0.0", "", "", True), ("0.0.0.0", "w", "", True), ("10.0.0.5", "", "a", True),
    ("0.0.0.0", "w", "a", False),
])
def test_without_passwords_only_loopback(host: str, writer_pw: str, analyst_pw: str,
                                         refused: bool) -> None:
    settings = WarehouseSettings(warehouse_host=host, warehouse_writer_password=writer_pw,
                                 warehouse_analyst_password=analyst_pw)
    problem = exposure_problem(settings)
    assert (problem is not None) == refused
    if problem:
        assert "\n" not in problem and host in problem
