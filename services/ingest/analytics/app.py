"""The analytics as a faust-streaming app: one agent over the inputs, state in tables.

App, topics, tables, agent, in that order. The agent reads ``gpu.util``, ``nodes``,
``jobs.placements`` and ``jobs.events`` as one stream with concurrency 1 (one worker: the
decisions of one GPU depend on its job's record, which other topics keep), decodes each record
with its topic's contract (what does not decode goes to the dead-letter topic), and hands it
to ``core.Analytics``, whose state is the app's tables. Decisions go to ``alerts``,
``reclaims``, ``gpu.drains`` and ``jobs.rightsizing``.

The tables are global and written through the producer's partitioner (``use_partitioner``):
the one stream mixes topics of different partition counts, so a table's partition cannot be
its source record's; and a global table is recovered whole, from every partition of its
changelog, when the worker starts. Outputs and changelog records are flushed before the source
offsets are committed (faust's at-least-once): after a crash the records since the last
commit are read again, and the core's replay checks make them change nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import faust
import msgspec

from gpufleet.bus import DeadLetters
from gpufleet.contracts import TOPIC_OF_TYPE, DeadLetter, Message, encode, key_of
from gpufleet.contracts import topic_name as full_topic_name
from gpufleet.ops import Metrics
from services.ingest.config import IngestSettings

from .config import AnalyticsSettings
from .core import Analytics, GpuTrack, Meta, NodeGpus
from .health import DrainState
from .jobs import JobRecord
from .reclaim import ReclaimState
from .rightsizing import UsageState

log = logging.getLogger(__name__)

INPUTS = ("gpu.util", "nodes", "jobs.placements", "jobs.events")
OUTPUTS = ("alerts", "reclaims", "gpu.drains", "jobs.rightsizing", "dlq")
TABLES: dict[str, type[msgspec.Struct]] = {
    "gpus": GpuTrack, "jobs": JobRecord, "reclaims": ReclaimState, "usage": UsageState,
    "drains": DrainState, "nodes": NodeGpus, "meta": Meta,
}

V = TypeVar("V", bound=msgspec.Struct)
# How long a table keeps this process's own last write of a key in front of the changelog's
# echo (see StructTable): far longer than an echo takes, even across a broker restart.
KEEP_WRITTEN_S = 600.0


class StructTable(MutableMapping[str, V], Generic[V]):
    """A faust table of msgspec structs (JSON) under string keys, as a typed mapping.

    What this process wrote is also kept here, and read first: a global table consumes its own
    changelog as a standby, so an older record read back late could otherwise stand in, for a
    moment, for a newer value (the one worker is the only writer, so its writes are the truth).
    The table itself is what recovery rebuilds; this copy only shields reads from the echo, so
    it keeps each key's last write (or delete) for ``keep_s`` only: the echo of a write comes
    back within moments, and a copy of every key ever written would grow without end (job ids
    do). An echo later still shows an older value only until the echo of the newest write.
    """

    def __init__(self, table: Any, kind: type[V], keep_s: float = KEEP_WRITTEN_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._table = table
        self._decoder = msgspec.json.Decoder(kind)
        # key -> (when, raw value or None: deleted here), oldest write first
        self._written: OrderedDict[bytes, tuple[float, bytes | None]] = OrderedDict()
        self._keep_s, self._clock = keep_s, clock

    def _remember(self, k: bytes, raw: bytes | None) -> None:
        now = self._clock()
        written = self._written
        written.pop(k, None)
        written[k] = (now, raw)
        while next(iter(written.values()))[0] < now - self._keep_s:
            written.popitem(last=False)

    def __getitem__(self, key: str) -> V:
        k = key.encode()
        mine = self._written.get(k)
        raw = mine[1] if mine is not None else self._table.get(k)
        if raw is None:
            raise KeyError(key)
        return self._decoder.decode(raw)

    def __setitem__(self, key: str, value: V) -> None:
        raw = msgspec.json.encode(value)
        self._remember(key.encode(), raw)
        self._table[key.encode()] = raw

    def __delitem__(self, key: str) -> None:
        k = key.encode()
        if key not in self:
            raise KeyError(key)
        self._remember(k, None)
        self._table.pop(k, None)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self._present(key.encode())

    def __iter__(self) -> Iterator[str]:
        keys = {k if isinstance(k, bytes) else str(k).encode() for k in list(self._table.keys())}
        keys |= set(self._written)
        return (k.decode() for k in sorted(keys) if self._present(k))

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def _present(self, k: bytes) -> bool:
        mine = self._written.get(k)
        return mine[1] is not None if mine is not None else k in self._table


@dataclass
class AnalyticsApp:
    app: faust.App
    core: Analytics
    tables: dict[str, Any]
    failed: asyncio.Event  # the agent died: the process must stop
    error: list[BaseException]
    metrics: Metrics

    async def readiness(self) -> dict[str, bool]:
        """Ready once the tables are recovered and the agent reads; never after it died."""
        tables: Any = self.app.tables
        recovered = bool(tables.recovery.completed.is_set())
        return {"recovered": recovered, "agent_alive": not self.failed.is_set()}


def _table(app: faust.App, name: str) -> Any:
    """A global table of bytes under bytes keys, stored as they are (no JSON around them)."""
    table: Any = app.GlobalTable(name, key_type=bytes, value_type=bytes, partitions=1,
                            use_partitioner=True, help=f"analytics state: {name}")
    table.key_serializer = table.value_serializer = "raw"  # read when its changelog is made
    return table


def app_id(settings: AnalyticsSettings) -> str:
    """The faust app id: the consumer group, and the prefix of the changelog topics."""
    prefix = settings.topic_prefix
    return f"{prefix}.{settings.analytics_app_id}" if prefix else settings.analytics_app_id


def create_app(settings: AnalyticsSettings, ingest: IngestSettings,
               metrics: Metrics | None = None) -> AnalyticsApp:
    metrics = metrics or Metrics(process=False)
    # 1. the app: its own consumer group, tables in memory (rebuilt from changelogs at start)
    app = faust.App(
        app_id(settings),
        broker=[f"kafka://{h.strip()}" for h in settings.kafka_bootstrap.split(",")],
        store=settings.analytics_store,
        web_enabled=False,
        autodiscover=False,
        processing_guarantee="at_least_once",
        consumer_auto_offset_reset="earliest",
        topic_replication_factor=settings.topic_replication_factor,
        producer_acks=-1,
        broker_session_timeout=ingest.ingest_session_timeout_ms / 1000,
    )

    # 2. topics: raw bytes in and out; the contracts decode and encode
    def named(name: str) -> str:
        return full_topic_name(name, settings.topic_prefix)

    short = {named(n): n for n in INPUTS}
    source = app.topic(*short, key_type=bytes, value_type=bytes, key_serializer="raw",
                       value_serializer="raw")
    outputs = {n: app.topic(named(n), key_type=bytes, value_type=bytes, key_serializer="raw",
                            value_serializer="raw") for n in OUTPUTS}

    # 3. tables: one per kind of state, global and written through the partitioner
    raw = {name: _table(app, name) for name in TABLES}
    typed: dict[str, Any] = {name: StructTable(raw[name], kind) for name, kind in TABLES.items()}
    core = Analytics(params=settings.params(ingest), **typed)

    async def emit(msg: Message) -> None:
        spec = TOPIC_OF_TYPE[type(msg)]
        await outputs[spec.name].send(key=key_of(msg), value=encode(msg))
        metrics.inc("analytics_decisions_total", help="decisions published, by message type",
                    kind=type(msg).__name__)

    async def dead_letter(event: Any, reason: str) -> None:
        m = event.message
        log.warning("dead letter from %s[%d]@%d: %s", m.topic, m.partition, m.offset, reason)
        metrics.inc("analytics_dead_letters_total",
                    help="input records that did not decode, or that analysing failed on")
        letter = DeadLetter(topic=m.topic, partition=m.partition, offset=m.offset, key=m.key,
                            value=m.value, reason=reason, consumer=app_id(settings))
        await outputs["dlq"].send(key=key_of(letter), value=encode(letter))

    # 4. the agent: one stream, in order, one record at a time
    failed, error = asyncio.Event(), list[BaseException]()

    @app.agent(source, concurrency=1)
    async def analyse(stream: Any) -> None:
        try:
            await _consume(stream)
        except Exception as e:  # a bug, or a broker that refuses: never a silent restart
            log.exception("analytics agent died")
            error.append(e)
            failed.set()
            raise

    letters = DeadLetters(None, settings, app_id(settings))  # decoding only: faust sends

    async def _consume(stream: Any) -> None:
        async for event in stream.events():
            name = short[event.message.topic]
            msg, reason = letters.decode(event.message)  # a newer schema is a letter too
            if reason is not None:
                await dead_letter(event, reason)
                continue
            metrics.inc("analytics_records_total", help="input records analysed", topic=name)
            try:
                outs = core.on_message(msg)
            except Exception as e:  # one message must not stop the analytics (and again
                log.exception("analytics failed on a message")  # after every restart)
                await dead_letter(event, f"analytics failed on this message: "
                                         f"{type(e).__name__}: {e}")
                continue
            for out in outs:
                await emit(out)

    return AnalyticsApp(app=app, core=core, tables=raw, failed=failed, error=error,
                        metrics=metrics)
