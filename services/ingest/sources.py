"""One source class per input kind: what ingest does with the messages of one topic partition.

A source checks a decoded message, folds it into the batch it is building, and hands the batch
over when the batch is sealed (``seal``): its rows per warehouse table and the messages to
publish. GPU samples also keep windows, which a restarted worker rebuilds by re-reading from
an earlier offset (``resume``, ``replay``); the other kinds are one or more rows per message.

``SOURCES`` maps each consumed topic to its source class: the only place where ingest tells
topics apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from gpufleet.contracts import (
    GpuDrain,
    GpuUndrain,
    JobEvent,
    Message,
    NodeInventory,
    NodeSample,
    Placement,
    ReclaimRequest,
    ReclaimWarning,
    ReclaimWithdrawn,
    RightSizingReport,
    StopJob,
    key_of,
)

from .core import Derived, Ingest
from .looprows import drain_row, reclaim_row, rightsizing_row
from .progress import Mark
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

Outgoing = tuple[str, Message, bytes | None]  # topic short name, message, key


@dataclass(frozen=True)
class Batch:
    """What one partition's sealed batch holds: rows per table, messages to publish."""

    tables: list[tuple[str, Columns]] = field(default_factory=list)
    outgoing: list[Outgoing] = field(default_factory=list)
    rows: int = 0  # GPU samples, or messages
    oldest_ts: float | None = None  # the oldest sample's timestamp (samples only)


class Source:
    """One topic partition's messages, turned into batches."""

    topic: ClassVar[str]  # the topic's short name

    def __init__(self, core: Ingest, tp: object) -> None:
        self.core = core
        self.tp = tp
        self.rows = 0

    def check(self, msg: Any, now: float) -> str | None:
        """Why a decoded message cannot be used, or None."""
        return None

    def add(self, msg: Any, offset: int) -> None:
        raise NotImplementedError

    def seal(self) -> Batch:
        """Hand over the batch built so far and start the next one."""
        raise NotImplementedError

    def resume(self, committed: int, mark: Mark) -> tuple[int, float]:
        """Start at a committed offset with its mark: (where to read from, the watermark
        there). Only records before ``committed`` are replayed."""
        return committed, 0.0

    def replay(self, msg: Any, offset: int, now: float) -> None:
        """A record before the committed offset, read again to rebuild state."""

    def replayed(self) -> None:
        """The re-read is over; what it rebuilt is current again."""

    def resume_point(self, next_offset: int) -> tuple[int, float]:
        """Where a restart must read from to rebuild this source's state, and the watermark
        there; with no state, the next offset."""
        return next_offset, 0.0

    def drop(self) -> None:
        """The partition went to another worker."""


class GpuSamples(Source):
    """Node samples: one raw row per GPU, per-GPU windows (to gpu_util_1m and gpu.util), and
    the idle alerts the closed windows raise."""

    topic = "gpu.samples"

    def __init__(self, core: Ingest, tp: object) -> None:
        super().__init__(core, tp)
        core.forget(tp)
        self.windows = core.partition(tp)
        self.cols = SampleRows()
        self.oldest_ts: float | None = None

    def check(self, msg: NodeSample, now: float) -> str | None:
        return self.core.sample_reason(msg, now)

    def add(self, msg: NodeSample, offset: int) -> None:
        self.rows += self.cols.add(msg)
        if not self.windows.add(msg, offset):
            self.core.late_dropped += len(msg.gpus)
        if self.oldest_ts is None or msg.ts < self.oldest_ts:
            self.oldest_ts = msg.ts

    def seal(self) -> Batch:
        derived = self.core.close_windows(self.tp)
        batch = Batch(tables=list(self._tables(derived)), outgoing=list(_outgoing(derived)),
                      rows=self.rows, oldest_ts=self.oldest_ts)
        self.cols, self.rows, self.oldest_ts = SampleRows(), 0, None
        return batch

    def _tables(self, derived: Derived) -> list[tuple[str, Columns]]:
        out = [("gpu_samples", self.cols.columns())]
        if derived.windows:
            out.append(("gpu_util_1m", to_columns([window_row(w) for w in derived.windows])))
        if derived.alerts:
            out.append(("alerts", to_columns([alert_row(a) for a in derived.alerts])))
        return out

    def resume(self, committed: int, mark: Mark) -> tuple[int, float]:
        self.windows.watermark = mark.watermark
        start = mark.replay if mark.replay is not None and mark.replay < committed else committed
        return start, mark.watermark

    def replay(self, msg: NodeSample, offset: int, now: float) -> None:
        if self.check(msg, now) is None:
            self.core.add_sample(self.tp, msg, offset, None)

    def replayed(self) -> None:
        self.core.close_windows(self.tp, emit=False)  # written before the restart

    def resume_point(self, next_offset: int) -> tuple[int, float]:
        point = self.windows.resume_point()
        return point if point is not None else (next_offset, self.windows.watermark)

    def drop(self) -> None:
        self.core.forget(self.tp)


def _outgoing(derived: Derived) -> list[Outgoing]:
    """Windows and alerts, keyed as their topics' contracts say (by node, by alert id)."""
    out: list[Outgoing] = [("gpu.util", w, key_of(w)) for w in derived.windows]
    out.extend(("alerts", a, key_of(a)) for a in derived.alerts)
    return out


class MessageRows(Source):
    """Messages stored as rows of one table (``rows_of`` says which), nothing else kept."""

    table: ClassVar[str]

    def __init__(self, core: Ingest, tp: object) -> None:
        super().__init__(core, tp)
        self.records: list[dict[str, Any]] = []

    def rows_of(self, msg: Any) -> list[dict[str, Any]]:
        raise NotImplementedError

    def add(self, msg: Any, offset: int) -> None:
        self.records.extend(self.rows_of(msg))
        self.rows += 1

    def seal(self) -> Batch:
        tables = [(self.table, to_columns(self.records))] if self.records else []
        batch = Batch(tables=tables, rows=self.rows)
        self.records, self.rows = [], 0
        return batch


class JobEvents(MessageRows):
    topic, table = "jobs.events", "job_events"

    def check(self, msg: JobEvent, now: float) -> str | None:
        return self.core.event_reason(msg, now)

    def rows_of(self, msg: JobEvent) -> list[dict[str, Any]]:
        return [event_row(msg)]


class Placements(MessageRows):
    """Placements are stored; stop requests on the same topic are not."""

    topic, table = "jobs.placements", "placements"

    def rows_of(self, msg: Placement | StopJob) -> list[dict[str, Any]]:
        return [placement_row(msg)] if isinstance(msg, Placement) else []


class Inventory(MessageRows):
    """A node's inventory: one row per GPU."""

    topic, table = "nodes", "nodes"

    def rows_of(self, msg: NodeInventory) -> list[dict[str, Any]]:
        return node_rows(msg)


class Reclaims(MessageRows):
    """The closed loop's reclaim warnings, withdrawals and requests."""

    topic, table = "reclaims", "reclaims"

    def rows_of(self, msg: ReclaimWarning | ReclaimWithdrawn | ReclaimRequest
                ) -> list[dict[str, Any]]:
        return [reclaim_row(msg)]


class GpuDrains(MessageRows):
    """GPUs drained for health, and returned."""

    topic, table = "gpu.drains", "gpu_drains"

    def rows_of(self, msg: GpuDrain | GpuUndrain) -> list[dict[str, Any]]:
        return [drain_row(msg)]


class RightSizing(MessageRows):
    """Requested against used, per job; the latest report per job is its state."""

    topic, table = "jobs.rightsizing", "job_rightsizing"

    def rows_of(self, msg: RightSizingReport) -> list[dict[str, Any]]:
        return [rightsizing_row(msg)]


SOURCE_CLASSES: tuple[type[Source], ...] = (GpuSamples, JobEvents, Placements, Inventory,
                                           Reclaims, GpuDrains, RightSizing)
SOURCES: dict[str, type[Source]] = {s.topic: s for s in SOURCE_CLASSES}
TABLES: tuple[str, ...] = ("gpu_samples", "gpu_util_1m", "alerts",
                           *(s.table for s in SOURCE_CLASSES if issubclass(s, MessageRows)))
