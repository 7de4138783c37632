"""``gpufleet sql "SELECT ..."``: ask the configured warehouse, print a table, CSV or JSON."""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from gpufleet.config import load
from services.warehouse.config import WarehouseSettings


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("query", help="SQL; '-' reads it from standard input")
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    p.add_argument("--url", help="ClickHouse URL (default: GPUFLEET_CLICKHOUSE_URL)")


def run(args: argparse.Namespace) -> int:
    from clickhouse_connect.driver.exceptions import ClickHouseError

    from services.warehouse.migrate import connect

    settings = load(WarehouseSettings, clickhouse_url=args.url)
    query = sys.stdin.read() if args.query == "-" else args.query
    try:
        result = connect(settings.clickhouse_url).query(query)
    except ClickHouseError as e:
        print(f"gpufleet sql: {e}", file=sys.stderr)
        return 1
    write(sys.stdout, args.format, list(result.column_names), result.result_rows)
    return 0


def _text(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat(sep=" ") if isinstance(value, dt.datetime) else value.isoformat()
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def write(out: TextIO, fmt: str, columns: list[str], rows: Sequence[Sequence[Any]]) -> None:
    if fmt == "json":
        for row in rows:
            out.write(json.dumps(dict(zip(columns, row, strict=True)), default=_text) + "\n")
    elif fmt == "csv":
        w = csv.writer(out, lineterminator="\n")
        w.writerow(columns)
        w.writerows([[("" if v is None else _text(v)) for v in row] for row in rows])
    else:
        cells = [columns, *[[_text(v) for v in row] for row in rows]]
        widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
        for n, row in enumerate(cells):
            out.write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
                      + "\n")
            if n == 0:
                out.write("  ".join("-" * w for w in widths) + "\n")
        out.write(f"({len(rows)} row{'s' if len(rows) != 1 else ''})\n")
