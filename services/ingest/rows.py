"""Messages to ClickHouse rows, column by column (the sink inserts columns, not row objects).

Column names follow the warehouse tables: ``gpu_samples`` has cluster, node, gpu, uuid, ts and
one column per scalar field of ``GpuSample``; the other tables have the fields of their
message. Timestamps stay Unix seconds here; the sink converts them to the column's ticks.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec

from gpufleet.contracts import (
    Alert,
    GpuSample,
    GpuUtilWindow,
    JobEvent,
    NodeInventory,
    NodeSample,
    Placement,
)

Columns = dict[str, list[Any]]

_GPU_FIELDS = GpuSample.__struct_fields__
_LISTS = {"processes"}
# (position in astuple(GpuSample), column name), scalars only; "index" is the "gpu" column
SAMPLE_SCALARS: tuple[tuple[int, str], ...] = tuple(
    (i, name) for i, name in enumerate(_GPU_FIELDS) if name not in _LISTS | {"index", "uuid"}
)
_INDEX = _GPU_FIELDS.index("index")
_UUID = _GPU_FIELDS.index("uuid")
SAMPLE_COLUMNS: tuple[str, ...] = ("cluster", "node", "gpu", "uuid", "ts",
                                   *(n for _, n in SAMPLE_SCALARS))


def empty(names: Iterable[str]) -> Columns:
    return {n: [] for n in names}


class SampleRows:
    """The raw rows of one batch, kept as columns from the first message on: each message's
    GPUs are turned into columns (one C-level ``zip``) and appended to the batch's."""

    def __init__(self) -> None:
        self.cluster: list[str] = []
        self.node: list[str] = []
        self.ts: list[float] = []
        self.fields: list[list[Any]] = [[] for _ in _GPU_FIELDS]  # GpuSample's, in order

    def __len__(self) -> int:
        return len(self.ts)

    def add(self, msg: NodeSample) -> int:
        """One row per GPU of ``msg``; returns the number of rows."""
        n = len(msg.gpus)
        self.cluster.extend([msg.cluster] * n)
        self.node.extend([msg.node] * n)
        self.ts.extend([msg.ts] * n)
        by_field = zip(*map(_astuple, msg.gpus), strict=True)
        for column, values in zip(self.fields, by_field, strict=False):  # no GPUs: nothing
            column.extend(values)
        return n

    def columns(self) -> Columns:
        if not self.ts:
            return empty(SAMPLE_COLUMNS)
        f = self.fields
        cols: Columns = {"cluster": self.cluster, "node": self.node, "ts": self.ts,
                         "gpu": f[_INDEX], "uuid": f[_UUID]}
        for i, name in SAMPLE_SCALARS:
            cols[name] = f[i]
        return cols


_astuple = msgspec.structs.astuple


def _message_columns(msg: msgspec.Struct, skip: frozenset[str] = frozenset()) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for name in msg.__struct_fields__:
        if name in skip:
            continue
        value = getattr(msg, name)
        if not isinstance(value, msgspec.Struct):
            row[name] = value
    return row


def event_row(ev: JobEvent) -> dict[str, Any]:
    return _message_columns(ev)


def placement_row(p: Placement) -> dict[str, Any]:
    return {"job_id": p.job.job_id, "tenant": p.job.tenant, "node": p.node, "gpus": p.gpus,
            "gpu_milli": p.gpu_milli, "member": p.member, "attempt": p.attempt,
            "ts": p.ts, "event_id": p.event_id}


def node_rows(inv: NodeInventory) -> list[dict[str, Any]]:
    """One row per GPU of the node, the node's own fields repeated on each."""
    base = _message_columns(inv, skip=frozenset({"gpus", "schema", "event_id"}))
    rows = []
    for g in inv.gpus:
        row = dict(base)
        row.update(_message_columns(g, skip=frozenset({"index"})))
        row["gpu"] = g.index
        rows.append(row)
    return rows


def window_row(w: GpuUtilWindow) -> dict[str, Any]:
    return _message_columns(w)


def alert_row(a: Alert) -> dict[str, Any]:
    return _message_columns(a)


def to_columns(rows: list[dict[str, Any]]) -> Columns:
    """Rows (dicts) to columns; a key missing in a row is ``None`` there."""
    names: dict[str, None] = {}
    for r in rows:
        names.update(dict.fromkeys(r))
    return {n: [r.get(n) for r in rows] for n in names}
