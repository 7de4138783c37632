"""Executor wiring: carry out the core's actions with a runner, publish its events, keep the
state file, and feed it the placements of its node from Kafka."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from aiokafka.errors import KafkaError

from gpufleet.bus import DeadLetters, connect, make_consumer, stop_quietly
from gpufleet.config import BusSettings
from gpufleet.contracts import (
    TERMINAL_STATES,
    GpuHealth,
    JobEvent,
    JobState,
    Message,
    NodeInventory,
    Placement,
    PlacementCommand,
    StopJob,
)
from gpufleet.ops import Metrics
from gpufleet.retry import kafka_transient
from gpufleet.runner import Service, Spawned
from services.executor.core import (
    Action,
    Adopt,
    Emit,
    ExecutorCore,
    Key,
    Launch,
    Outcome,
    Terminate,
)
from services.executor.runner import LaunchError, OnExit, Started
from services.executor.state import StateFile, same_process

log = logging.getLogger(__name__)


class Runner(Protocol):
    needs_command: bool
    tasks: Spawned  # its watchers and simulated runs; the service supervises tasks.watch()

    async def launch(self, key: Key, p: Placement, on_exit: OnExit) -> Started: ...
    def adopt(self, key: Key, pid: int, start: int | None, on_exit: OnExit) -> None: ...
    def terminate(self, key: Key, grace_s: float) -> None: ...
    async def close(self) -> None: ...


class EventSink(Protocol):
    """Where job events go (an ``Outbox``)."""

    def send(self, name: str, msg: Message) -> None: ...


SUMMARY_EVERY_S = 60.0  # how often the executor and the fleet say how their jobs are doing


class Summary:
    """A short line every ``every_s`` seconds: jobs running, started and ended since the last
    line (each heartbeat is logged at DEBUG only, so the console is not flooded)."""

    def __init__(self, where: str, every_s: float = SUMMARY_EVERY_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._where = where
        self._every = every_s
        self._clock = clock
        self._due = clock() + every_s
        self.started = 0
        self.ended = 0

    def count(self, ev: JobEvent) -> None:
        if ev.state == JobState.STARTED:
            self.started += 1
        elif ev.state in TERMINAL_STATES:
            self.ended += 1

    def due(self, running: int) -> str | None:
        """The line, once it is due (the counts start again); None before."""
        now = self._clock()
        if now < self._due:
            return None
        self._due = now + self._every
        line = (f"{self._where}: {running} jobs running, {self.started} started, "
                f"{self.ended} ended since the last {self._every:g} s")
        self.started = self.ended = 0
        return line

    def say(self, running: int) -> None:
        """Log the line if it is due."""
        line = self.due(running)
        if line is not None:
            log.info("%s", line)


class NodeExecutor:
    """One node's executor: the core, a runner, an outbox for events, a state file."""

    def __init__(self, core: ExecutorCore, runner: Runner, outbox: EventSink,
                 state: StateFile | None = None, clock: Callable[[], float] = time.time,
                 summary: Summary | None = None) -> None:
        self.core = core
        self.runner = runner
        self._outbox = outbox
        self._state = state
        self._clock = clock
        self.summary = summary or Summary(f"executor of {core.node}")

    async def handle(self, cmd: Command) -> None:
        now = self._clock()
        match cmd:
            case Placement():
                actions = self.core.on_placement(cmd, now)
            case StopJob():
                actions = self.core.on_stop(cmd, now)
            case NodeInventory():
                if cmd.node == self.core.node:
                    self.core.unhealthy = unhealthy_gpus(cmd)
                return
        for launch in self._apply(actions):
            await self._launch(launch)

    def tick(self) -> None:
        self._apply(self.core.heartbeats(self._clock()), save=False)

    def recover(self) -> None:
        """Report (or adopt) the jobs that an earlier run of this executor left behind."""
        if self._state is None:
            return
        saved = self._state.load()
        outcomes = {(j.placement.job.job_id, j.placement.member): Outcome(
            alive=self.runner.needs_command and same_process(j.pid, j.pid_start))
            for j in saved}
        self._apply(self.core.recover(saved, outcomes, self._clock()))

    async def close(self) -> None:
        await self.runner.close()

    async def _launch(self, a: Launch) -> None:
        try:
            pid, start = await self.runner.launch(a.key, a.placement, self._exited)
        except Exception as e:  # a job's input must not stop the node: that job fails
            if not isinstance(e, LaunchError):
                log.exception("launching %s/%d failed", *a.key)
            why = str(e) if isinstance(e, LaunchError) else f"{type(e).__name__}: {e}"
            for launch in self._apply(self.core.on_launch_failed(a.key, why, self._clock())):
                self.runner.tasks.spawn(self._launch(launch))
            return
        self._apply(self.core.on_started(a.key, pid, start, self._clock()))

    def _exited(self, key: Key, code: int | None) -> None:
        for launch in self._apply(self.core.on_exit(key, code, self._clock())):
            self.runner.tasks.spawn(self._launch(launch))  # a later attempt that waited

    def _apply(self, actions: list[Action], save: bool = True) -> list[Launch]:
        """Carry out the actions that need no waiting; return the launches."""
        launches: list[Launch] = []
        for a in actions:
            match a:
                case Emit(event=ev):
                    log.log(logging.DEBUG if ev.state == JobState.HEARTBEAT else logging.INFO,
                            "job %s/%d on %s: %s%s", ev.job_id, ev.member or 0, ev.node,
                            ev.state, f" ({ev.reason})" if ev.reason else "")
                    self.summary.count(ev)
                    self._outbox.send("jobs.events", ev)
                case Launch():
                    launches.append(a)
                case Terminate(key=key, grace_s=grace):
                    self.runner.terminate(key, grace)
                case Adopt(key=key, pid=pid):
                    job = self.core.jobs[key]
                    self.runner.adopt(key, pid, job.pid_start, self._exited)
        if save and actions and self._state is not None:
            self._state.save(self.core.node, self.core.jobs.values())
        return launches


Command = PlacementCommand | NodeInventory
Dispatch = Callable[[Command], Awaitable[None]]
TOPICS = ("jobs.placements", "nodes")  # what executors read


def unhealthy_gpus(inv: NodeInventory) -> dict[int, str]:
    """The GPUs that telemetry found lost or degraded, with why: no new jobs go there."""
    return {g.index: f"{g.health}" + (f" ({g.health_reason})" if g.health_reason else "")
            for g in inv.gpus if g.health != GpuHealth.OK}


async def consume_commands(consumer: Any, dispatch: Dispatch, stop: asyncio.Event,
                           prefix: str, on_idle: Callable[[], None] | None = None,
                           commit_timeout_s: float = 10.0) -> None:
    """Feed every placement, stop and node inventory to ``dispatch``; commit after each batch.

    The stops of a batch go first (see ``ExecutorCore.on_stop``). A record that does not
    decode, or that ``dispatch`` fails on, is logged and skipped: every
    executor reads every placement, so dead-lettering here would file one copy per node
    (ingest files what does not decode once).
    A commit that fails or times out (the broker is away) is logged and made again after the
    next batch; a placement read twice runs once (the core remembers it). A Kafka error that
    retrying cannot fix ends the loop with that error.
    """
    letters = DeadLetters(None, BusSettings(topic_prefix=prefix), "executor")
    uncommitted = False
    while not stop.is_set():
        try:
            batches = await consumer.getmany(timeout_ms=500, max_records=500)
        except KafkaError as e:
            if not kafka_transient(e):
                raise
            log.warning("reading placements failed (%s); retrying", e)
            batches = {}
            await asyncio.sleep(0.5)
        decoded = [(record, await letters.decode_or_dead_letter(record))
                   for records in batches.values() for record in records]
        # Stops first: a stop names its attempt, so one read before its placement still
        # applies; and a placement read here after another job's stop finds its GPUs free.
        decoded.sort(key=lambda rc: not isinstance(rc[1], StopJob))
        for record, cmd in decoded:
            if cmd is not None:
                await letters.guard_async(record, dispatch, cmd)
        if batches or uncommitted:
            uncommitted = not await _commit(consumer, commit_timeout_s)
        if on_idle is not None:
            on_idle()


class Delivering(Protocol):
    def delivering(self) -> bool: ...


class PlacementReader:
    """The placements of one node (or of a simulated fleet) fed to ``dispatch`` in a task of
    the service; ``on_idle`` runs after each poll. It is ready while it keeps polling."""

    def __init__(self, settings: BusSettings, group_id: str, dispatch: Dispatch,
                 on_idle: Callable[[], None], deadline_s: float) -> None:
        self._settings = settings
        self._group_id = group_id
        self._dispatch = dispatch
        self._on_idle = on_idle
        self._deadline_s = deadline_s
        self._polled = time.monotonic()
        self._consumer: Any = None

    async def connect(self, service: Service) -> bool:
        """Start the consumer (waiting for the broker); False if ``stop`` came first."""
        self._consumer = await connect(lambda: make_consumer(
            self._settings, TOPICS, group_id=self._group_id), service.stop)
        if self._consumer is None:
            return False
        consumer = self._consumer
        service.on_exit(lambda: stop_quietly(consumer))
        return True

    def polling(self) -> bool:
        return time.monotonic() - self._polled < self._deadline_s

    async def serve_ops(self, service: Service, metrics: Metrics, host: str, port: int,
                        sender: Delivering) -> None:
        """The node side's ops port (none when ``port`` is 0): ready while ``sender``
        delivers and this reader keeps polling."""
        async def ready() -> dict[str, bool]:
            return {"sender": sender.delivering(), "placements": self.polling()}

        if port:
            await service.ops(metrics, host, port, ready)

    def start(self, service: Service) -> None:
        service.task("placements", consume_commands(
            self._consumer, self._dispatch, service.stop, self._settings.topic_prefix,
            on_idle=self._idle))

    def _idle(self) -> None:
        self._polled = time.monotonic()
        self._on_idle()


async def _commit(consumer: Any, timeout_s: float) -> bool:
    try:
        async with asyncio.timeout(timeout_s):
            await consumer.commit()
    except (KafkaError, TimeoutError) as e:
        log.warning("commit of placements failed (%s); will commit again", e or "timed out")
        return False
    return True
