"""``gpufleet sql`` against the warehouse."""

from __future__ import annotations

import argparse
import io
import json
from typing import Any

import pytest

from services.warehouse import sql_cmd

pytestmark = pytest.mark.integration
QUERY = "SELECT number AS n, toString(number) AS s, NULL AS z FROM numbers(2)"


@pytest.mark.parametrize(("fmt", "check"), [
    ("table", lambda out: out.splitlines()[0].split() == ["n", "s", "z"]
     and out.rstrip().endswith("(2 rows)")),
    ("csv", lambda out: out == "n,s,z\n0,0,\n1,1,\n"),
    ("json", lambda out: [json.loads(x) for x in out.splitlines()]
     == [{"n": 0, "s": "0", "z": None}, {"n": 1, "s": "1", "z": None}]),
])
def test_sql_prints_each_format(warehouse: Any, capsys: pytest.CaptureFixture[str], fmt: str,
                                check: Any) -> None:
    args = argparse.Namespace(query=QUERY, format=fmt, url=warehouse.writer_url)
    assert sql_cmd.run(args) == 0
    assert check(capsys.readouterr().out)


def test_sql_reports_errors(warehouse: Any, capsys: pytest.CaptureFixture[str]) -> None:
    args = argparse.Namespace(query="SELEC 1", format="table", url=warehouse.writer_url)
    assert sql_cmd.run(args) == 1
    assert "62" in capsys.readouterr().err


def test_write_table_aligns_columns() -> None:
    out = io.StringIO()
    sql_cmd.write(out, "table", ["a", "long_name"], [(1, "x"), (None, 2.5)])
    assert out.getvalue().splitlines() == [
        "a     long_name", "----  ---------", "1     x", "NULL  2.5", "(2 rows)"]
