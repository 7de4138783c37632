"""The closed loop end to end on the real broker: the analytics worker, the scheduler and a
simulated node (the fleet simulator: telemetry and an executor).

- An idle job is warned (its reason says so), reclaimed, requeued and placed again. The test
  plays the ingest writer's part: it publishes the job's per-minute windows (event time, so
  three minutes of windows take a second).
- A GPU reports an XID under a job (the simulated GPU fails, ``GPUFLEET_SIM_XID``): the
  analytics drain it, the scheduler moves the job to the other GPU.
- A drain survives a scheduler killed with SIGKILL: the restarted one places nothing on the
  drained GPU until it is returned.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sched_service import scheduler_env, wait_ready

from gpufleet.bus import make_consumer, make_producer, publish
from gpufleet.config import BusSettings
from gpufleet.contracts import (
    DrainCause,
    GpuDrain,
    GpuUndrain,
    GpuUtilWindow,
    JobEvent,
    JobSpec,
    JobState,
    Message,
    Placement,
    ReclaimRequest,
    ReclaimWarning,
    SchedulerJob,
    StopJob,
    SubmitJob,
    decoder_for,
)
from gpufleet.localkafka import free_port
from services.fleet.__main__ import serve
from services.fleet.config import FleetSettings

pytestmark = pytest.mark.integration

POLICIES = "default: name=research-default idle_timeout=2m min_util=5 grace=1m"
LOOP = {"filters": "health,gpumodel,drained,fits", "loop": "reclaim"}
SCHEDULER = [sys.executable, "-m", "gpufleet.cli", "scheduler"]
WATCH = ["jobs.placements", "jobs.events", "reclaims", "gpu.drains", "scheduler.jobs"]


class Seen:
    """Everything on the watched topics, decoded, as it arrives (committed records only)."""

    def __init__(self, bus: BusSettings) -> None:
        self.bus = bus
        self.consumer = make_consumer(bus, WATCH, group_id=None)
        self.msgs: list[Any] = []
        self.logs: list[Path] = []
        self.metrics: int | None = None  # the analytics' ops port, for its counts on a failure

    async def until(self, want: Callable[[Any], bool], timeout: float = 60) -> Any:
        try:
            async with asyncio.timeout(timeout):
                while True:
                    for m in self.msgs:
                        if want(m):
                            return m
                    for tp, records in (await self.consumer.getmany(timeout_ms=200)).items():
                        name = tp.topic.removeprefix(self.bus.topic_prefix + ".")
                        self.msgs += [decoder_for(name).decode(r.value) for r in records]
        except TimeoutError:
            logs = "\n".join(f"--- {p.name}\n{tail(p)}" for p in self.logs)
            counts = await analytics_counts(self.metrics) if self.metrics else ""
            pytest.fail(f"not seen in {timeout} s; seen: {self.msgs[-30:]}\n{counts}\n{logs}")


def tail(log: Path) -> str:
    """A log's last lines, without faust's tables of offsets."""
    lines = [ln for ln in log.read_text().splitlines() if not ln.startswith(("|", "+"))]
    return "\n".join(lines[-40:])


async def analytics_counts(port: int) -> str:
    """What the analytics worker counted (records read per topic, decisions), or why not."""
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http, \
                http.get(f"http://127.0.0.1:{port}/metrics") as r:
            return "\n".join(ln for ln in (await r.text()).splitlines()
                             if ln.startswith("gpufleet_analytics"))
    except (aiohttp.ClientError, TimeoutError) as e:
        return f"analytics /metrics: {e}"


def event(job: str, state: JobState, attempt: int | None = None) -> Callable[[Any], bool]:
    return lambda m: (isinstance(m, JobEvent) and m.job_id == job and m.state == state
                      and m.source == "scheduler" and (attempt is None or m.attempt == attempt))


def executor_event(job: str, state: JobState) -> Callable[[Any], bool]:
    return lambda m: (isinstance(m, JobEvent) and m.job_id == job and m.state == state
                      and m.source != "scheduler")


def placement(job: str, attempt: int) -> Callable[[Any], bool]:
    return lambda m: isinstance(m, Placement) and m.job.job_id == job and m.attempt == attempt


def analytics_env(bus: BusSettings, ops_port: int) -> dict[str, str]:
    return {**os.environ, "GPUFLEET_KAFKA_BOOTSTRAP": bus.kafka_bootstrap,
            "GPUFLEET_TOPIC_PREFIX": bus.topic_prefix, "GPUFLEET_CLUSTER": bus.cluster,
            "GPUFLEET_RECLAIM_POLICIES": POLICIES, "GPUFLEET_IDLE_AFTER_S": "120",
            "GPUFLEET_UNDRAIN_AFTER_S": "3600", "GPUFLEET_RIGHTSIZING_EVERY_S": "3600",
            "GPUFLEET_ANALYTICS_OPS_PORT": str(ops_port),
            "GPUFLEET_ANALYTICS_OPS_HOST": "127.0.0.1",
            "GPUFLEET_INGEST_SESSION_TIMEOUT_MS": "6000"}


def spawn(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as f:
        return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=f)


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class Stack:
    seen: Seen
    env: dict[str, str]  # the scheduler's
    procs: dict[str, subprocess.Popen[bytes]]


@asynccontextmanager
async def stack(bus: BusSettings, tmp: Path, analytics: bool = True, nodes: int = 1,
                gpus: int = 2, **scheduler: str) -> AsyncIterator[Stack]:
    """A fleet of ``nodes`` nodes of ``gpus`` GPUs, the scheduler with the loop plugins on (and
    ``scheduler`` settings), and (unless told otherwise) the analytics worker."""
    seen = Seen(bus)
    await seen.consumer.start()
    stop = asyncio.Event()
    fleet = asyncio.create_task(serve(FleetSettings(
        kafka_bootstrap=bus.kafka_bootstrap, topic_prefix=bus.topic_prefix, cluster=bus.cluster,
        sim_nodes=nodes, sim_gpus_per_node=gpus, sim_models="H100-80GB", interval_s=0.5,
        heartbeat_s=1.0, state_dir=str(tmp / "executor"), fleet_ops_port=0), stop))
    env = scheduler_env(bus, f"{bus.topic_prefix}-sched", **(LOOP | scheduler))
    procs = {"scheduler": spawn(SCHEDULER, env, tmp / "scheduler.log")}
    seen.logs.append(tmp / "scheduler.log")
    if analytics:
        seen.metrics = free_port()
        procs["analytics"] = spawn([sys.executable, "-m", "services.ingest.analytics"],
                                   analytics_env(bus, seen.metrics), tmp / "analytics.log")
        seen.logs.append(tmp / "analytics.log")
    try:
        await wait_ready(int(env["GPUFLEET_SCHEDULER_OPS_PORT"]))
        if seen.metrics:  # tables recovered and the agent running: it reads from here on
            await wait_ready(seen.metrics, timeout=90)
        yield Stack(seen, env, procs)
    finally:
        for proc in procs.values():
            stop_process(proc)
        stop.set()
        await asyncio.wait_for(fleet, 30)
        await seen.consumer.stop()


async def send(bus: BusSettings, name: str, *msgs: Message) -> None:
    producer = make_producer(bus)
    await producer.start()
    try:
        for msg in msgs:
            await publish(producer, bus, name, msg)
    finally:
        await producer.stop()


def windows(p: Placement, minutes: range, t0: float, p95: float = 1.0) -> list[GpuUtilWindow]:
    """What the ingest writer would make of the job's GPU: per-minute windows (idle unless
    told otherwise)."""
    return [GpuUtilWindow(cluster="test", node=p.node, gpu=p.gpus[0],
                          window_start=t0 + 60 * m, samples=60, util_mean=min(p95, 0.5),
                          util_min=0.0, util_max=p95, util_p95=p95, job_id=p.job.job_id,
                          tenant=p.job.tenant) for m in minutes]


async def test_an_idle_job_is_warned_reclaimed_requeued_and_placed_again(
        bus: BusSettings, tmp_path: Path) -> None:
    async with stack(bus, tmp_path) as s:
        seen = s.seen
        job = JobSpec(job_id="idle-1", tenant="research", gpus=1, sim_util=0,
                      sim_duration_s=600, restartable=True)
        await send(bus, "jobs.requests", SubmitJob(job=job))
        first = await seen.until(placement("idle-1", 0))
        await seen.until(executor_event("idle-1", JobState.STARTED))
        t0 = float(int(time.time()))
        # 1. Two idle minutes reach the timeout: warned, and the job's reason says so.
        await send(bus, "gpu.util", *windows(first, range(2), t0))
        warning = await seen.until(lambda m: isinstance(m, ReclaimWarning))
        assert warning.job_id == "idle-1" and warning.policy == "research-default"
        await seen.until(lambda m: isinstance(m, SchedulerJob) and m.job.job_id == "idle-1"
                         and m.reason.startswith("warned: idle below 5 % for 2 min"))
        # 2. Still idle after the grace: reclaimed, stopped through the preemption path.
        await send(bus, "gpu.util", *windows(first, range(2, 3), t0))
        request = await seen.until(lambda m: isinstance(m, ReclaimRequest))
        assert request.action == "requeue"
        stopping = await seen.until(event("idle-1", JobState.PREEMPTING, 0))
        assert stopping.reason == ("reclaimed: idle below 5 % for 3 min under policy "
                                   "research-default; requeued")
        stop = await seen.until(lambda m: isinstance(m, StopJob) and m.job_id == "idle-1")
        assert (stop.node, stop.reason) == (first.node, "preempted")
        # 3. The executor stops it; the scheduler requeues it and places it again.
        await seen.until(executor_event("idle-1", JobState.PREEMPTED))
        queued = await seen.until(event("idle-1", JobState.QUEUED, 1))
        assert queued.reason == f"{stopping.reason}; back in its queue"
        await seen.until(placement("idle-1", 1))
        await seen.until(lambda m: executor_event("idle-1", JobState.STARTED)(m)
                         and m.attempt == 1)
        assert sum(1 for m in seen.msgs if isinstance(m, StopJob)) == 1


async def test_a_gpu_with_an_xid_is_drained_and_its_job_moved(
        bus: BusSettings, tmp_path: Path) -> None:
    async with stack(bus, tmp_path) as s:
        seen = s.seen
        job = JobSpec(job_id="xid-1", gpus=1, sim_util=90, sim_duration_s=600,
                      env={"GPUFLEET_SIM_XID": "48"})
        await send(bus, "jobs.requests", SubmitJob(job=job))
        first = await seen.until(placement("xid-1", 0))
        bad = first.gpus[0]
        drain = await seen.until(lambda m: isinstance(m, GpuDrain))
        assert (drain.node, drain.gpu, drain.cause) == (first.node, bad, DrainCause.XID)
        stopping = await seen.until(event("xid-1", JobState.PREEMPTING, 0))
        assert stopping.reason == f"moved off a drained GPU: {drain.reason}"
        moved = await seen.until(placement("xid-1", 1))
        assert (moved.node, moved.gpus) == (first.node, [1 - bad])
        await seen.until(lambda m: executor_event("xid-1", JobState.STARTED)(m)
                         and m.attempt == 1)


async def test_a_drain_survives_a_scheduler_killed_with_sigkill(
        bus: BusSettings, tmp_path: Path) -> None:
    async with stack(bus, tmp_path, analytics=False) as s:
        seen = s.seen
        drained = GpuDrain(cluster=bus.cluster, node="sim-0000", gpu=0, cause=DrainCause.ECC,
                           reason="uncorrectable ECC errors", since=time.time())
        await send(bus, "gpu.drains", drained)
        await send(bus, "jobs.requests", SubmitJob(job=JobSpec(job_id="before", gpus=1,
                                                               sim_duration_s=600)))
        before = await seen.until(placement("before", 0))
        assert before.gpus == [1]  # not on the drained GPU
        # Killed; the scheduler started after it knows the drain only from the topic (its
        # input offsets are past it).
        s.procs["scheduler"].send_signal(signal.SIGKILL)
        s.procs["scheduler"].wait(30)
        seen.logs.append(tmp_path / "scheduler-2.log")
        s.procs["scheduler"] = spawn(SCHEDULER, s.env, tmp_path / "scheduler-2.log")
        await wait_ready(int(s.env["GPUFLEET_SCHEDULER_OPS_PORT"]))
        await send(bus, "jobs.requests", SubmitJob(job=JobSpec(job_id="after", gpus=1,
                                                               sim_duration_s=600)))
        waiting = await seen.until(lambda m: isinstance(m, SchedulerJob)
                                   and m.job.job_id == "after" and "drained" in m.reason)
        assert waiting.reason == ("the GPUs that would fit are drained: GPU 0 on sim-0000: "
                                  "uncorrectable ECC errors")
        assert not any(placement("after", 0)(m) for m in seen.msgs)
        await send(bus, "gpu.drains", GpuUndrain(
            cluster=bus.cluster, node="sim-0000", gpu=0, reason="healthy for 15 min",
            drained_since=drained.since, healthy_since=drained.since))
        after = await seen.until(placement("after", 0))
        assert after.gpus == [0]


async def test_shares_go_where_the_gpu_is_measured_idle_and_borrowers_go_first(
        bus: BusSettings, tmp_path: Path) -> None:
    async with stack(bus, tmp_path, analytics=False, nodes=3, gpus=1,
                     scores="fgd,bestfit:0.009,topology,loadaware:10", loop="opportunistic",
                     opportunistic_queues="spot") as s:
        seen = s.seen
        # Three owners, one per GPU (600 thousandths each); two keep theirs busy.
        for i in range(3):
            await send(bus, "jobs.requests", SubmitJob(job=JobSpec(
                job_id=f"own-{i}", gpu_milli=600, sim_duration_s=600)))
        owners = [await seen.until(placement(f"own-{i}", 0)) for i in range(3)]
        assert len({p.node for p in owners}) == 3
        t0 = float(int(time.time())) - 120
        for i, p in enumerate(owners):
            await send(bus, "gpu.util", *windows(p, range(1), t0, p95=2.0 if i == 2 else 90.0))
        idle = owners[2].node
        # 1. Load-aware: a share goes to the GPU its owner leaves idle.
        await send(bus, "jobs.requests", SubmitJob(job=JobSpec(
            job_id="share", gpu_milli=300, sim_duration_s=600)))
        assert (await seen.until(placement("share", 0))).node == idle
        # 2. Opportunistic: no whole GPU is free; the spot job borrows the idle one and runs.
        await send(bus, "jobs.requests", SubmitJob(job=JobSpec(
            job_id="spot-1", queue="spot", gpus=1, sim_duration_s=600)))
        lent = await seen.until(placement("spot-1", 0))
        assert (lent.node, lent.gpus, lent.lent) == (idle, [0], True)
        placed = await seen.until(event("spot-1", JobState.PLACED, 0))
        assert placed.reason.startswith("opportunistic: on lent GPU 0 of " + idle)
        await seen.until(executor_event("spot-1", JobState.STARTED))
        # 3. Its owners get busy: the borrower is stopped and requeued.
        await send(bus, "gpu.util", *windows(owners[2], range(1, 2), t0, p95=80.0))
        stopping = await seen.until(event("spot-1", JobState.PREEMPTING, 0))
        assert stopping.reason == (f"opportunistic: the owners of GPU 0 on {idle} are busy "
                                   "again (p95 80 % >= 50 %)")
        await seen.until(executor_event("spot-1", JobState.PREEMPTED))
        queued = await seen.until(event("spot-1", JobState.QUEUED, 1))
        assert queued.reason == f"{stopping.reason}; back in its queue"
        assert not any(isinstance(m, JobEvent) and m.state == JobState.FAILED
                       for m in seen.msgs)
