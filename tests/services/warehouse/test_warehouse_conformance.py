"""The warehouse driven by the real clients analysts and dashboards use, each installed from its
own registry (see conformance/clients.py): clickhouse-go v2 as Grafana configures it, ClickHouse
JDBC 0.10.0 with default settings, @clickhouse/client (Node), clickhouse-connect, and curl.
Every client runs the same kinds of checks: ping, formats or types, parameters, 1 M rows
streamed, an insert as the writer, the analyst refused writes and files, an error with its code,
compression both ways, a session. A client whose toolchain is absent is skipped, saying which."""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from clickhouse_connect.driver.exceptions import DatabaseError

from tests.services.warehouse.conformance import clients
from tests.services.warehouse.conformance.clients import Missing
from tests.services.warehouse.conformance_checks import CHECKS
from tests.services.warehouse.conftest import (
    ANALYST_MAX_EXECUTION_TIME_S,
    ANALYST_PASSWORD,
    Warehouse,
)

pytestmark = pytest.mark.integration
RUN_TIMEOUT_S = 300


def _external(command: list[str], warehouse: Warehouse,
              env: dict[str, str] | None = None) -> dict[str, str]:
    done = subprocess.run(command, env={**os.environ, **(env or {}),
                                        "WAREHOUSE_ADDR": f"127.0.0.1:{warehouse.port}",
                                        "ANALYST_PASSWORD": ANALYST_PASSWORD,
                                        "MAX_EXECUTION_TIME": str(ANALYST_MAX_EXECUTION_TIME_S)},
                          capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False)
    found = clients.results(done.stdout)
    if not found:
        pytest.fail(f"{command[0]} printed no results (exit {done.returncode}): "
                    f"{done.stderr[-3000:]}")
    return found


def _go(warehouse: Warehouse) -> dict[str, str]:
    return _external(clients.go_command(), warehouse)


def _node(warehouse: Warehouse) -> dict[str, str]:
    command, env = clients.node_command()
    return _external(command, warehouse, env)


def _java(warehouse: Warehouse) -> dict[str, str]:
    return _external(clients.java_command(), warehouse)


def _check(out: dict[str, str], name: str, fn: Callable[[], object]) -> None:
    try:
        fn()
        out[name] = ""
    except Exception as e:  # a failed check is reported with its reason, the others go on
        out[name] = f"{type(e).__name__}: {e}"[:500]


def _expect(cond: bool, what: object) -> None:
    if not cond:
        raise AssertionError(what)


def _curl(warehouse: Warehouse) -> dict[str, str]:
    if shutil.which("curl") is None:
        raise Missing("curl not installed")
    base = f"http://127.0.0.1:{warehouse.port}/"

    def curl(*args: str, data: bytes | None = None) -> tuple[int, bytes, str]:
        done = subprocess.run(["curl", "-sS", "-i", *args], input=data, capture_output=True,
                              timeout=120, check=False)
        head, _, body = done.stdout.partition(b"\r\n\r\n")
        status = int(head.split()[1]) if head else 0
        return status, body, head.decode(errors="replace")

    analyst = ["-u", f"analyst:{ANALYST_PASSWORD}"]
    out: dict[str, str] = {}
    _check(out, "ping", lambda: _expect(curl(base + "ping")[1] == b"Ok.\n", "ping"))

    def formats() -> None:
        for fmt, want in (("CSV", b"1,\"a\"\n"), ("JSONEachRow", b'{"n":1,"s":"a"}\n'),
                          ("TSV", b"1\ta\n")):
            got = curl(*analyst, "--data-binary", f"SELECT 1 AS n, 'a' AS s FORMAT {fmt}",
                       base)[1]
            _expect(got == want, (fmt, got))
    _check(out, "formats", formats)
    _check(out, "params", lambda: _expect(curl(
        *analyst, "--data-binary", "SELECT {x:UInt8} + 1", base + "?param_x=41")[1] == b"42\n",
        "params"))

    def stream() -> None:
        body = curl(*analyst, "--data-binary", "SELECT number FROM numbers(1000000)", base)[1]
        lines = body.splitlines()
        _expect(len(lines) == 1_000_000 and sum(map(int, lines)) == 499_999_500_000, len(lines))
    _check(out, "stream_1m", stream)

    def insert() -> None:
        curl("--data-binary", "CREATE OR REPLACE TABLE curl_conformance (a UInt32) "
             "ENGINE = MergeTree ORDER BY a COMMENT 'conformance test'", base)
        rows = gzip.compress(b"".join(b"%d\n" % i for i in range(10000)))
        status, body, _ = curl("-H", "Content-Encoding: gzip", "--data-binary", "@-",
                               base + "?query=INSERT+INTO+curl_conformance+FORMAT+TSV",
                               data=rows)
        _expect(status == 200, body)
        got = curl(*analyst, "--compressed", "--data-binary",
                   "SELECT count() FROM curl_conformance", base)[1]
        _expect(got == b"10000\n", got)
    _check(out, "insert_writer_compressed_both_ways", insert)

    def refused(sql: str, code: str, status: int) -> Callable[[], None]:
        def run() -> None:
            got_status, body, head = curl(*analyst, "--data-binary", sql, base)
            _expect(f"X-ClickHouse-Exception-Code: {code}" in head and got_status == status,
                    (got_status, body[:200]))
        return run
    _check(out, "analyst_refused_write",
           refused("INSERT INTO curl_conformance VALUES (1)", "164", 500))
    _check(out, "analyst_refused_file",
           refused("SELECT * FROM file('/etc/passwd', 'LineAsString')", "497", 403))
    _check(out, "error_code", refused("SELECT * FROM no_such_table_here", "60", 404))

    def session() -> None:
        sid = f"?session_id=curl-{uuid.uuid4().hex[:8]}"
        curl("--data-binary", "CREATE TEMPORARY TABLE curl_tmp (a UInt8)", base + sid)
        curl("--data-binary", "INSERT INTO curl_tmp VALUES (5)", base + sid)
        _expect(curl("--data-binary", "SELECT a FROM curl_tmp", base + sid)[1] == b"5\n", sid)
        _expect(curl("--data-binary", "SELECT a FROM curl_tmp", base)[0] == 404, "leaked")
    _check(out, "session", session)
    return out


def _clickhouse_connect(warehouse: Warehouse) -> dict[str, str]:
    out: dict[str, str] = {}
    for compress in ("lz4", "zstd"):
        writer = warehouse.client(compress=compress)
        analyst = warehouse.analyst(compress=compress)
        _connect_checks(out, compress, writer, analyst)
        writer.close()
        analyst.close()
    return out


def _connect_checks(out: dict[str, str], tag: str, writer: Any, analyst: Any) -> None:
    def code_of(fn: Callable[[], object], code: int) -> None:
        try:
            fn()
        except DatabaseError as e:
            _expect(f"code: {code}" in str(e), str(e)[:300])
            return
        raise AssertionError(f"no error, want {code}")

    _check(out, f"ping_{tag}", lambda: _expect(analyst.ping(), "ping"))
    _check(out, f"types_{tag}", lambda: _expect(analyst.query(
        "SELECT 'héllo', [1, 2], toLowCardinality('lc'), CAST(NULL AS Nullable(UInt8))"
    ).result_rows == [("héllo", [1, 2], "lc", None)], "types"))
    _check(out, f"params_{tag}", lambda: _expect(analyst.query(
        "SELECT {x:UInt8} + 1", parameters={"x": 41}).result_rows == [(42,)], "params"))

    def stream() -> None:
        count = total = 0
        with analyst.query_column_block_stream("SELECT number FROM numbers(1000000)") as blocks:
            for block in blocks:
                count += len(block[0])
                total += sum(block[0])
        _expect((count, total) == (1_000_000, 499_999_500_000), (count, total))
    _check(out, f"stream_1m_{tag}", stream)

    table = f"connect_conformance_{tag}"

    def insert() -> None:
        writer.command(f"CREATE OR REPLACE TABLE {table} (a UInt32, s String) "
                       "ENGINE = MergeTree ORDER BY a COMMENT 'conformance test'")
        writer.insert(table, [[i, f"n{i}"] for i in range(10000)], column_names=["a", "s"])
        _expect(analyst.query(f"SELECT count() FROM {table}").result_rows == [(10000,)], "count")
    _check(out, f"insert_writer_{tag}", insert)
    _check(out, f"analyst_refused_write_{tag}",
           lambda: code_of(lambda: analyst.insert(table, [[1, "x"]], column_names=["a", "s"]),
                           164))
    _check(out, f"analyst_refused_file_{tag}", lambda: code_of(
        lambda: analyst.query("SELECT * FROM file('/etc/passwd', 'LineAsString')"), 497))
    _check(out, f"error_code_{tag}", lambda: code_of(
        lambda: analyst.query("SELECT * FROM no_such_table_here"), 60))

    def session() -> None:  # each client is a session of its own (clickhouse-connect's default)
        writer.command("CREATE TEMPORARY TABLE IF NOT EXISTS connect_tmp (a UInt8)")
        writer.command("INSERT INTO connect_tmp VALUES (5)")
        _expect(writer.query("SELECT a FROM connect_tmp").result_rows[-1] == (5,), "value")
        code_of(lambda: analyst.query("SELECT a FROM connect_tmp"), 60)
    _check(out, f"session_{tag}", session)


CLIENTS: dict[str, Callable[[Warehouse], dict[str, str]]] = {
    "clickhouse-go v2.51.0 (Grafana's options, HTTP)": _go,
    "ClickHouse JDBC 0.10.0 (default settings)": _java,
    "@clickhouse/client 1.23.1 (Node)": _node,
    "clickhouse-connect": _clickhouse_connect,
    "curl": _curl,
}


@pytest.mark.parametrize("client", list(CLIENTS))
def test_client_passes_every_check(warehouse: Warehouse, client: str) -> None:
    try:
        found = CLIENTS[client](warehouse)
    except Missing as e:
        pytest.skip(f"{client}: {e}")
    expected = CHECKS[client.split(" ")[0]]
    assert set(found) >= expected, f"checks that did not run: {sorted(expected - set(found))}"
    failed = {name: why for name, why in found.items() if why}
    assert not failed, failed
