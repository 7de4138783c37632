"""The checks each client of the conformance suite must report (a check that does not run is
a failure, not a pass)."""

from __future__ import annotations

_COMMON = ("ping", "params", "stream_1m", "analyst_refused_write", "analyst_refused_file",
           "error_code", "session")


def _tagged(names: tuple[str, ...], *tags: str) -> frozenset[str]:
    return frozenset(f"{n}_{t}" for n in names for t in tags)


CHECKS: dict[str, frozenset[str]] = {
    "clickhouse-go": _tagged((*_COMMON, "types", "insert_writer", "analyst_settings"),
                             "lz4", "zstd"),
    "ClickHouse": frozenset({*_COMMON, "types", "insert_writer"}),
    "@clickhouse/client": frozenset({*_COMMON, "formats", "insert_writer"}),
    "clickhouse-connect": _tagged((*_COMMON, "types", "insert_writer"), "lz4", "zstd"),
    "curl": frozenset({*_COMMON, "formats", "insert_writer_compressed_both_ways"}),
}
