"""The batch-and-offset state machine of one ingest worker: records, assignments and
acknowledgements in; actions out. No I/O: the driver carries out the actions.

1. ``assigned``: a partition starts at its committed offset (``Seek``); GPU samples re-read
   from the offset their commit mark names, to rebuild their open windows (``replay``).
2. ``take``: records are decoded and checked; what is unusable becomes a ``DeadLetter``, the
   rest goes to the partition's source. A batch named by an intent (a commit made before a
   restart) is sealed exactly at its end, so it is stored again under the same tokens.
3. ``polled``: after each poll, once the batches hold ``max_rows`` or ``within_s`` has passed,
   every batch is sealed into one ``Write``; while the previous write is still in flight the
   worker ``Pause``s fetching instead (and ``Resume``s when it is through).
4. ``written``: the driver acknowledges a write; the offsets it committed are stored.
5. ``revoked`` and ``stopping`` seal what is held into a write the driver waits for.

A ``Write`` carries, per partition, the intent (the batch's start offset, with the end and the
re-read point in its mark) and the done offset; the driver commits the intent, inserts, publishes,
then commits the done offset. Offsets move only after the warehouse and the broker acknowledged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from .core import Ingest
from .progress import Mark
from .sources import SOURCES, Batch, Source


class Record(Protocol):
    """What the machine reads of a consumer record."""

    @property
    def offset(self) -> int: ...


R = TypeVar("R", bound=Record)
TP = TypeVar("TP")
Decode = Callable[[Any], tuple[Any, str | None]]  # record -> (message, None) or (None, reason)


@dataclass(frozen=True)
class Sealed(Generic[TP]):
    """One partition's batch, taken out of the machine's hands, with its two commits."""

    tp: TP
    topic: str  # the short name
    start: int  # the intent is committed here, the batch's first offset
    end: int  # the done offset: after the batch's last record
    intent: Mark
    done: Mark
    batch: Batch


@dataclass(frozen=True)
class Seek(Generic[TP]):
    tp: TP
    offset: int


@dataclass(frozen=True)
class DeadLetter(Generic[R]):
    record: R
    topic: str
    reason: str
    error: Exception | None = None  # the source failed on the record (not a bad record)


@dataclass(frozen=True)
class Write(Generic[TP]):
    """Store these batches; ``wait``: the worker takes no records until it is through."""

    sealed: tuple[Sealed[TP], ...]
    wait: bool


@dataclass(frozen=True)
class Pause:
    """Stop fetching: the previous write waits on the warehouse."""


@dataclass(frozen=True)
class Resume:
    """Fetch again."""


Action = Seek[Any] | DeadLetter[Any] | Write[Any] | Pause | Resume


class Partition:
    """Where one assigned partition stands, and the source building its batch."""

    def __init__(self, source: Source) -> None:
        self.source = source
        self.start: int | None = None  # first offset of the batch being built
        self.next = 0  # the offset after the last one taken
        self.end: int | None = None  # an intent from before a restart: this batch ends here
        self.replay_until = 0  # offsets below this only rebuild state
        self.replaying = False
        self.resume: tuple[int, float] = (0, 0.0)  # the last committed re-read point, watermark

    def seal(self, tp: Any) -> Sealed[Any] | None:
        if self.start is None or self.next <= self.start:
            return None
        intent = Mark(end=self.next, replay=self.resume[0], watermark=self.resume[1])
        batch = self.source.seal()
        self.resume = self.source.resume_point(self.next)
        done = Mark(replay=self.resume[0], watermark=self.resume[1])
        sealed = Sealed(tp, self.source.topic, self.start, self.next, intent, done, batch)
        self.start, self.end = self.next, None
        return sealed


class Batcher(Generic[TP]):
    def __init__(self, core: Ingest, decode: Decode, topic_of: Callable[[TP], str],
                 max_rows: int, within_s: float) -> None:
        self.core = core
        self.decode = decode
        self.topic_of = topic_of  # a partition's topic short name
        self.max_rows = max_rows
        self.within_s = within_s
        self.parts: dict[TP, Partition] = {}
        self.stored: dict[TP, int] = {}  # offsets committed as stored, per partition
        self.in_flight = 0  # writes not yet acknowledged
        self.paused = False
        self.last_write = 0.0  # when ``polled`` last sealed the batches (monotonic)

    # -- partitions ---------------------------------------------------------------------

    def assigned(self, tp: TP, committed: int | None, mark: Mark) -> list[Action]:
        """Start a partition at its committed offset, re-reading first to rebuild state."""
        part = self.parts[tp] = Partition(SOURCES[self.topic_of(tp)](self.core, tp))
        self.stored[tp] = committed or 0
        if committed is None:
            return []
        part.start = part.next = part.replay_until = committed
        part.end = mark.end
        start, watermark = part.source.resume(committed, mark)
        part.resume = (start, watermark)
        return [Seek(tp, start)]

    def revoked(self, tps: Iterable[TP]) -> list[Action]:
        """Seal the partitions' batches (a write to wait for) and let them go."""
        gone = [(tp, self.parts.pop(tp)) for tp in tps if tp in self.parts]
        sealed = [s for tp, p in gone if p.end is None and (s := p.seal(tp)) is not None]
        for tp, p in gone:
            self.stored.pop(tp, None)
            p.source.drop()
        return [self._write(sealed, wait=True)]

    # -- records ------------------------------------------------------------------------

    def take(self, tp: TP, records: Iterable[Any], now: float) -> list[Action]:
        """Records of one partition, in offset order; ``now`` is the wall clock."""
        part = self.parts.get(tp)
        if part is None:
            return []  # revoked while they were fetched
        actions: list[Action] = []
        source = part.source
        for rec in records:
            offset = rec.offset
            if part.end is not None and offset >= part.end:
                actions.append(self._seal_one(tp, part))  # the intent's batch is complete
            if part.start is None:
                part.start = offset
            if offset < part.replay_until:
                part.replaying = True
                msg, reason = self.decode(rec)
                if reason is None:
                    source.replay(msg, offset, now)
                continue
            if part.replaying:
                source.replayed()
                part.replaying = False
            letter = self._take_record(source, rec, now)
            if letter is not None:
                actions.append(letter)
            part.next = offset + 1
        if part.end is not None and part.next == part.end:
            actions.append(self._seal_one(tp, part))
        return actions

    def _take_record(self, source: Source, rec: Any, now: float) -> DeadLetter[Any] | None:
        msg, reason = self.decode(rec)
        if reason is None:
            reason = source.check(msg, now)
        if reason is not None:
            return DeadLetter(rec, source.topic, reason)
        try:
            source.add(msg, rec.offset)
        except Exception as e:  # a message the source fails on is filed, the rest goes on
            return DeadLetter(rec, source.topic, "", error=e)
        return None

    def _seal_one(self, tp: TP, part: Partition) -> Write[TP]:
        sealed = part.seal(tp)
        return self._write([sealed] if sealed is not None else [], wait=True)

    # -- time ---------------------------------------------------------------------------

    def polled(self, mono: float) -> list[Action]:
        """After a poll (``mono``: the monotonic clock): seal every batch into one write
        when they are full or due, or pause while the previous write is in flight."""
        rows = sum(p.source.rows for p in self.parts.values())
        if rows < self.max_rows and mono - self.last_write < self.within_s:
            return []
        if self.in_flight:
            if self.paused:
                return []
            self.paused = True
            return [Pause()]
        actions: list[Action] = []
        if self.paused:
            self.paused = False
            actions.append(Resume())
        self.last_write = mono
        sealed = self._seal_all()
        if sealed:
            actions.append(self._write(sealed, wait=False))
        return actions

    def stopping(self) -> Write[TP]:
        """The last write before the worker stops."""
        return self._write(self._seal_all(), wait=True)

    def _seal_all(self) -> list[Sealed[TP]]:
        return [s for tp, p in self.parts.items()
                if p.end is None and (s := p.seal(tp)) is not None]

    def _write(self, sealed: list[Sealed[TP]], wait: bool) -> Write[TP]:
        self.in_flight += 1
        return Write(tuple(sealed), wait)

    # -- acknowledgements ---------------------------------------------------------------

    def written(self, write: Write[TP], committed: bool) -> None:
        """The driver is through with ``write``; ``committed``: its done offsets were
        committed (not when the partitions had moved to another worker meanwhile)."""
        self.in_flight -= 1
        if not committed:
            return
        for s in write.sealed:
            if s.tp in self.stored:
                self.stored[s.tp] = s.end
