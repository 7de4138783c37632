"""Any message that decodes is one every consumer can handle and the warehouse can store.

Messages are drawn from each topic's contract (random values and values on the bounds) and
fed to the pure core of every consumer: the scheduler, ingest (checks, rows, windows), the
executor and the api's live state; what they publish must satisfy the contracts in turn.
The rows ingest makes of them are inserted into a real warehouse (the embedded ClickHouse).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from aiokafka import TopicPartition
from contract_strategies import NOW, wire
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from gpufleet.contracts import (
    TOPIC_OF_TYPE,
    Alert,
    GpuInfo,
    GpuSample,
    GpuUtilWindow,
    JobEvent,
    JobSpec,
    Message,
    NodeInventory,
    NodeSample,
    Placement,
    StopJob,
    SubmitJob,
    decoder_for,
    encode,
)
from gpufleet.localkafka import free_port
from services.api import core as views
from services.api.state import LiveState
from services.executor.core import ExecutorCore, Launch
from services.executor.driver import unhealthy_gpus
from services.ingest.config import IngestSettings
from services.ingest.core import Ingest
from services.ingest.driver import params_of
from services.ingest.rows import alert_row, to_columns, window_row
from services.ingest.sink import ClickHouseSink
from services.ingest.sources import SOURCES, Source
from services.scheduler.config import SchedulerSettings
from services.scheduler.core import SchedulerCore
from services.scheduler.profile import build_profile
from services.scheduler.snapshot import snapshot

# Not shrunk: messages on their bounds are large, and shrinking them takes minutes; a failure
# is shown as drawn (and Hypothesis replays it first on the next run).
EXAMPLES = settings(max_examples=60, deadline=None, phases=[Phase.explicit, Phase.reuse,
                                                            Phase.generate],
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def messages(*topics: str, max_size: int = 6) -> st.SearchStrategy[list[tuple[str, Any]]]:
    """Lists of decoded messages of the given topics, each drawn from its contract."""
    one = st.one_of(*(wire(t).map(lambda v, t=t: (t, v)) for t in topics))
    return st.lists(one, max_size=max_size).map(lambda pairs: [decoded(t, v) for t, v in pairs])


def decoded(topic: str, value: Any) -> tuple[str, Any]:
    """A drawn wire value, through its topic's decoder (it must decode: it is in contract)."""
    return topic, decoder_for(topic).decode(msgspec.json.encode(value))


def in_contract(msg: Message) -> None:
    """What a consumer publishes must decode with its topic's decoder."""
    name = TOPIC_OF_TYPE[type(msg)].name
    assert decoder_for(name).decode(encode(msg)) == msg


def inventory(node: str = "n1", gpus: int = 8) -> NodeInventory:
    return NodeInventory(cluster="c", node=node, cpu_milli=64_000, memory_mib=1 << 20, gpus=[
        GpuInfo(index=i, uuid=f"GPU-{node}-{i}", model="H100", memory_total_bytes=80 << 30)
        for i in range(gpus)])


def test_every_topic_draws_messages_that_decode() -> None:
    from gpufleet.contracts import TOPICS

    @EXAMPLES
    @given(st.sampled_from([t.name for t in TOPICS]).flatmap(
        lambda t: wire(t).map(lambda v: (t, v))))
    def check(pair: tuple[str, Any]) -> None:
        decoded(*pair)

    check()


def big_cluster() -> tuple[SchedulerCore, list[Message]]:
    """A scheduler of 40 nodes of 64 GPUs: room for gangs larger than one job's bound."""
    core = SchedulerCore(build_profile(SchedulerSettings()), clock=lambda: NOW)
    out: list[Message] = []
    for n in range(40):
        out += core.handle(inventory(f"n{n}", gpus=64))
    return core, out


@EXAMPLES
@given(messages("nodes", "jobs.requests", "jobs.events", "gpu.util", max_size=10))
def test_the_scheduler_core_takes_any_message(msgs: list[tuple[str, Any]]) -> None:
    core, out = big_cluster()
    for _, msg in msgs:
        out += core.handle(msg)
        out += core.cycle()
    out += core.cycle()
    out.append(snapshot(core, "c", 0.0))
    for m in out:
        in_contract(m)


def test_a_gang_of_more_than_1024_gpus_is_in_the_snapshot_in_contract() -> None:
    core, out = big_cluster()
    for n in range(3):
        out += core.handle(SubmitJob(job=JobSpec(job_id=f"gang-{n}", gpus=64, gang=30)))
    out += core.cycle()
    snap = snapshot(core, "c", 0.0)
    assert {s.gpus for s in [*snap.running, *snap.queued]} == {64 * 30}
    for m in [*out, snap]:
        in_contract(m)


def _ingest(msgs: list[tuple[str, Any]]) -> tuple[dict[str, list[dict[str, list[Any]]]], int]:
    """Run the messages through ingest's checks, rows and windows as a worker does; the
    tables' columns, and how many were dead-lettered."""
    core = Ingest(params_of(IngestSettings()), cluster="c")
    sources: dict[str, Source] = {}
    letters = 0
    for offset, (name, msg) in enumerate(msgs):
        source = sources.get(name) or sources.setdefault(
            name, SOURCES[name](core, TopicPartition(f"gpufleet.{name}", 0)))
        if isinstance(msg, JobEvent) and core.event_reason(msg, NOW) is None:
            core.on_event(msg)  # the job feed
        elif isinstance(msg, Placement):
            core.on_placement(msg)
        if source.check(msg, NOW) is not None:
            letters += 1
            continue
        source.add(msg, offset)
    samples = sources.get("gpu.samples")
    if samples is not None:  # a late sample moves the watermark past every window
        late = NodeSample(cluster="c", node="flush", ts=NOW + 250, gpus=[
            GpuSample(index=0, uuid="GPU-flush")])
        samples.add(late, len(msgs))
    tables: dict[str, list[dict[str, list[Any]]]] = {}
    for source in sources.values():
        batch = source.seal()
        for _, m, _ in batch.outgoing:
            in_contract(m)
        for table, cols in batch.tables:
            tables.setdefault(table, []).append(cols)
    return tables, letters


@EXAMPLES
@given(messages("gpu.samples", "jobs.events", "jobs.placements", "nodes"))
def test_the_ingest_core_takes_any_message(msgs: list[tuple[str, Any]]) -> None:
    tables, letters = _ingest(msgs)
    assert letters <= len(msgs)
    for cs in tables.values():
        for cols in cs:  # a table's columns are all as long
            assert len({len(values) for values in cols.values()}) == 1


@EXAMPLES
@given(messages("jobs.placements", "nodes", max_size=8), st.sampled_from([0, 1, 137, -9, None,
                                                                          2**31 - 1, -(2**31)]))
def test_the_executor_core_takes_any_message(msgs: list[tuple[str, Any]],
                                             exit_code: int | None) -> None:
    core = ExecutorCore(node="n1", gpus=8, heartbeat_s=10, needs_command=False)
    actions = []
    for _, msg in msgs:
        match msg:
            case Placement():
                msg.node, msg.ts = "n1", NOW  # for this node, and fresh: all of it runs
                actions += core.on_placement(msg, NOW)
            case StopJob():
                actions += core.on_stop(msg, NOW)
            case NodeInventory():
                core.unhealthy = unhealthy_gpus(msg)
    for a in list(actions):
        if isinstance(a, Launch):
            actions += core.on_started(a.key, 4242, None, NOW)
    actions += core.heartbeats(NOW + 60)
    for key in list(core.jobs):
        actions += core.on_exit(key, exit_code, NOW + 61)
    for a in actions:
        event = getattr(a, "event", None)
        if event is not None:
            in_contract(event)


API_TOPICS = ("scheduler.state", "nodes", "gpu.samples", "jobs.requests", "jobs.placements",
              "jobs.events", "alerts")


@EXAMPLES
@given(messages(*API_TOPICS, max_size=10))
def test_the_api_state_and_its_views_take_any_message(msgs: list[tuple[str, Any]]) -> None:
    state = LiveState(clock=lambda: NOW)
    for _, msg in msgs:
        state.apply(msg)
    shown: list[Any] = [views.node_list(state), views.cluster_summary(state, "c"),
                        views.list_jobs(state), views.tenants(state, {}), views.queues(state),
                        views.alerts(state)]
    shown += [views.job_detail(r) for r in state.jobs.values()]
    for view in shown:
        assert len(msgspec.json.encode(view)) < 10 << 20


# -- the warehouse ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sink(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClickHouseSink]:
    """Ingest's own sink, connected to a real warehouse that has the tables."""
    from services.warehouse.testing import migrated, start_warehouse, stop_warehouse, url

    port = free_port()
    proc = start_warehouse(Path(tmp_path_factory.mktemp("warehouse")) / "data", port)
    try:
        migrated(port)
        sink = ClickHouseSink(url(port))
        asyncio.run(sink.start(wait_s=10))
        yield sink
        asyncio.run(sink.close())
    finally:
        stop_warehouse(proc)


def _store(sink: ClickHouseSink, tables: dict[str, list[dict[str, list[Any]]]]) -> int:
    async def go() -> int:
        n = 0
        for table, batches in tables.items():
            for cols in batches:
                n += await sink.insert(table, cols, uuid.uuid4().hex)
        return n

    return asyncio.run(go())


@pytest.mark.integration
def test_the_warehouse_stores_what_ingest_makes_of_any_message(sink: ClickHouseSink) -> None:
    @settings(EXAMPLES, max_examples=40)
    @given(messages("gpu.samples", "jobs.events", "jobs.placements", "nodes", "gpu.util",
                    "alerts", max_size=8))
    def check(msgs: list[tuple[str, Any]]) -> None:
        tables, _ = _ingest([(t, m) for t, m in msgs if t not in ("gpu.util", "alerts")])
        windows = [m for _, m in msgs if isinstance(m, GpuUtilWindow)]
        alerts = [m for _, m in msgs if isinstance(m, Alert)]
        if windows:
            tables.setdefault("gpu_util_1m", []).append(to_columns([window_row(w)
                                                                    for w in windows]))
        if alerts:
            tables.setdefault("alerts", []).append(to_columns([alert_row(a) for a in alerts]))
        sent = sum(len(next(iter(c.values()), [])) for cs in tables.values() for c in cs)
        assert _store(sink, tables) == sent

    check()
