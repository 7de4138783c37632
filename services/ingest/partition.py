"""The batch a worker is building for one source partition, and where that partition stands."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from aiokafka import TopicPartition

from gpufleet.contracts import (
    JobEvent,
    Message,
    NodeInventory,
    NodeSample,
    Placement,
)

from .core import Derived, Ingest, new_sample_columns
from .rows import (
    Columns,
    SampleRows,
    alert_row,
    event_row,
    node_rows,
    placement_row,
    to_columns,
    window_row,
)

TABLE_OF = {"jobs.events": "job_events", "jobs.placements": "placements", "nodes": "nodes"}


@dataclass
class Part:
    tp: TopicPartition
    name: str  # the topic's short name: gpu.samples, jobs.events, ...
    start: int | None = None  # first offset of the batch being built (= the committed offset)
    next: int = 0  # the offset after the last one taken
    end: int | None = None  # an intent from before a restart: this batch must end here
    replay_until: int = 0  # offsets below this only rebuild windows
    replaying: bool = False
    resume: tuple[int, float] = (0, 0.0)  # the last committed re-read point and watermark
    cols: SampleRows = field(default_factory=new_sample_columns)
    records: list[dict[str, Any]] = field(default_factory=list)
    derived: list[Derived] = field(default_factory=list)
    rows: int = 0
    oldest_ts: float | None = None

    def check(self, core: Ingest, msg: Any, now: float) -> str | None:
        if isinstance(msg, NodeSample):
            return core.sample_reason(msg, now)
        if isinstance(msg, JobEvent):
            return core.event_reason(msg, now)
        return None

    def add(self, core: Ingest, msg: Any, offset: int) -> int:
        """Take one valid message; returns the GPU samples it held."""
        if isinstance(msg, NodeSample):
            core.add_sample(self.tp, msg, offset, self.cols)
            if self.oldest_ts is None or msg.ts < self.oldest_ts:
                self.oldest_ts = msg.ts
            self.rows += len(msg.gpus)
            return len(msg.gpus)
        if isinstance(msg, JobEvent):
            self.records.append(event_row(msg))
        elif isinstance(msg, Placement):
            self.records.append(placement_row(msg))
        elif isinstance(msg, NodeInventory):
            self.records.extend(node_rows(msg))
        self.rows += 1
        return 0

    def tables(self) -> Iterator[tuple[str, Columns]]:
        """The rows of this batch, per table."""
        if self.name == "gpu.samples":
            yield "gpu_samples", self.cols.columns()
            windows = [w for d in self.derived for w in d.windows]
            alerts = [a for d in self.derived for a in d.alerts]
            if windows:
                yield "gpu_util_1m", to_columns([window_row(w) for w in windows])
            if alerts:
                yield "alerts", to_columns([alert_row(a) for a in alerts])
        elif self.records and self.name in TABLE_OF:
            yield TABLE_OF[self.name], to_columns(self.records)

    def outgoing(self) -> Iterator[tuple[str, Message, bytes]]:
        """Messages to publish: windows keyed by node, alerts keyed by alert id."""
        for d in self.derived:
            for w in d.windows:
                yield "gpu.util", w, w.node.encode()
            for a in d.alerts:
                yield "alerts", a, a.alert_id.encode()

    def reset(self) -> None:
        self.start = self.next
        self.end = None
        self.cols = new_sample_columns()
        self.records = []
        self.derived = []
        self.rows = 0
        self.oldest_ts = None
