"""Running one async service in the foreground: SIGTERM and Ctrl-C stop it cleanly, and a
background task that dies takes the process down with one clear line.

Every service's ``__main__`` has ``serve(settings, stop)``, written as one ``running(stop)``
block: what it opens is closed when it ends (an ``AsyncExitStack``, newest first), and its
background tasks run in an ``asyncio.TaskGroup``. A task that raises, or that returns while it
was meant to run on, raises ``TaskDied``; the group cancels the others, and ``run_service``
logs the one line and returns 1. No process stays alive with a part of it dead. Short-lived
tasks started one by one (a job's watcher) go through a ``Spawned``, whose ``watch`` is
supervised in turn: the first of them to raise stops it too.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gpufleet.ops import Metrics, ReadyCheck

log = logging.getLogger(__name__)
Known = Mapping[type[Exception], Callable[[Exception], str]]  # an error type -> what to say


class TaskDied(Exception):
    """A background task of a service ended; the message says which and why."""


def supervise(group: asyncio.TaskGroup, name: str, coro: Coroutine[Any, Any, None],
              until: asyncio.Event | None = None) -> asyncio.Task[None]:
    """Start ``coro`` in ``group`` as the task ``name``.

    If it raises, or returns before ``until`` is set (with no ``until``: at all), it raises
    ``TaskDied``, which stops the group and, through ``run_service``, the process.
    """
    return group.create_task(_watched(name, coro, until), name=name)


async def _watched(name: str, coro: Coroutine[Any, Any, None],
                   until: asyncio.Event | None) -> None:
    try:
        await coro
    except TaskDied:
        raise
    except Exception as e:
        log.debug("task %s died", name, exc_info=True)
        raise TaskDied(f"{name} died: {type(e).__name__}: {e}") from e
    if until is None or not until.is_set():
        raise TaskDied(f"{name} ended while the service was still running")


class Service:
    """A running service: what it opened, and its background tasks (see ``running``)."""

    def __init__(self, stop: asyncio.Event, stack: contextlib.AsyncExitStack,
                 group: asyncio.TaskGroup) -> None:
        self.stop = stop
        self.drained = asyncio.Event()  # set once every task but the last ones has ended
        self._stack = stack
        self._group = group
        self._tasks: list[asyncio.Task[None]] = []
        self._last: list[asyncio.Task[None]] = []

    def on_exit(self, close: Callable[[], object]) -> None:
        """Call ``close()`` (and await what it returns, if anything) when the service ends:
        after its tasks, newest first."""
        async def call() -> None:
            done = close()
            if inspect.isawaitable(done):
                await done

        self._stack.push_async_callback(call)

    def task(self, name: str, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run ``coro`` until ``stop``: one that raises, or ends before, stops the service."""
        task = supervise(self._group, name, coro, until=self.stop)
        self._tasks.append(task)
        return task

    def last(self, name: str,
             run: Callable[[asyncio.Event], Coroutine[Any, Any, None]]) -> asyncio.Task[None]:
        """Run ``run(drained)``, meant to go on until every other task has ended (an outbox's
        sender, which then flushes what they queued)."""
        task = supervise(self._group, name, run(self.drained), until=self.drained)
        self._last.append(task)
        return task

    async def ops(self, metrics: Metrics, host: str, port: int,
                  ready: ReadyCheck | None = None) -> None:
        """Serve /metrics, /healthz and /readyz on ``host:port`` while the service runs."""
        from gpufleet.ops import serve_ops

        self.on_exit((await serve_ops(metrics, host, port, ready)).cleanup)


@contextlib.asynccontextmanager
async def running(stop: asyncio.Event) -> AsyncIterator[Service]:
    """A service's life: the block opens what it needs and starts its tasks; then the service
    runs until ``stop``, its tasks end, the ``last`` ones after the others, and what it opened
    is closed, newest first. A block that started no task ends when it returns (its work was
    in the foreground). A task that dies cancels the rest and raises ``TaskDied`` (in an
    exception group) out of the block."""
    async with contextlib.AsyncExitStack() as stack, asyncio.TaskGroup() as group:
        service = Service(stop, stack, group)
        yield service
        if service._tasks or service._last:
            await stop.wait()
        if service._tasks:
            await asyncio.wait(service._tasks)
        service.drained.set()


class Spawned:
    """Short-lived tasks that may end at any time but must not die unseen."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._tasks: set[asyncio.Task[None]] = set()
        self._died: BaseException | None = None
        self._wake: asyncio.Event | None = None

    def spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if task.cancelled() or task.exception() is None or self._died is not None:
            return
        self._died = task.exception()
        log.debug("a %s task died", self._name, exc_info=self._died)
        if self._wake is not None:
            self._wake.set()

    async def watch(self, until: asyncio.Event) -> None:
        """Return once ``until`` is set; raise ``TaskDied`` if one of the tasks died first."""
        self._wake = self._wake or asyncio.Event()
        waits = [asyncio.ensure_future(until.wait()), asyncio.ensure_future(self._wake.wait())]
        try:
            if self._died is None:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()
        if self._died is not None:
            e = self._died
            raise TaskDied(f"a {self._name} task died: {type(e).__name__}: {e}") from e

    async def close(self) -> None:
        """Cancel the tasks still running and wait for them."""
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t


def run_service(main: Callable[[asyncio.Event], Awaitable[int | None]], log_level: str = "INFO",
                name: str = "gpufleet", known: Known | None = None) -> int:
    """Run ``main(stop)``; ``stop`` is set on SIGTERM/SIGINT and main is expected to return.

    A second signal cancels main outright. Returns what main returns (0 for None) after a
    clean stop; 1 when a background task died, or main raised an error of a type in ``known``
    (one line on the log says which and why, as ``known`` words it). Any other error is a bug
    and is raised.
    """
    from aiokafka.errors import KafkaConnectionError

    logging.getLogger().setLevel(log_level.upper())
    said: Known = {KafkaConnectionError: cannot_reach_kafka, **(known or {})}

    async def _go() -> int | None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()

        def _signal() -> None:
            if stop.is_set() and task is not None:
                task.cancel()
            stop.set()

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, _signal)
        return await main(stop)

    code: int | None = 0
    try:
        with contextlib.suppress(asyncio.CancelledError, KeyboardInterrupt):
            code = asyncio.run(_go())
    except Exception as e:
        lines = _said(e if isinstance(e, BaseExceptionGroup) else BaseExceptionGroup("", [e]),
                      said)
        if lines is None:
            raise
        log.debug("where it stopped", exc_info=True)
        log.error("%s stopped: %s", name, "; ".join(lines))
        return 1
    return code or 0


def _said(group: BaseExceptionGroup[BaseException], known: Known) -> list[str] | None:
    """One line for each dead task and known error in ``group``; None if it holds another."""
    dead, rest = group.split(TaskDied)
    named, rest = rest.split(tuple(known)) if rest is not None and known else (None, rest)
    if rest is not None:
        return None
    lines = [str(e) for e in (_leaves(dead) if dead is not None else [])]
    for e in _leaves(named) if named is not None else []:
        say = next(s for kind, s in known.items() if isinstance(e, kind))
        lines.append(say(e) if isinstance(e, Exception) else str(e))
    return lines


def said_in_one_line(prog: str, run: Callable[[], int],
                     known: Mapping[type[Exception], Callable[[Exception], str]] | None = None
                     ) -> int:
    """Run a service's entry point. A bad setting, an unreachable broker or an error named in
    ``known`` (exception type -> what to say) ends the process with one line on stderr and
    exit status 2 (a setting) or 1, not a traceback; any other error is a bug and raises."""
    from aiokafka.errors import KafkaConnectionError

    from gpufleet.config import ConfigError

    said: dict[type[Exception], Callable[[Exception], str]] = {
        ConfigError: lambda e: f"bad setting: {e}",
        KafkaConnectionError: cannot_reach_kafka,
        **(known or {}),
    }
    try:
        return run()
    except Exception as e:
        say = next((s for kind, s in said.items() if isinstance(e, kind)), None)
        if say is None:
            raise
        print(f"{prog}: {say(e)}", file=sys.stderr)
        return 2 if isinstance(e, ConfigError) else 1


def cannot_reach_kafka(e: Exception) -> str:
    return (f"cannot reach Kafka ({e}); is GPUFLEET_KAFKA_BOOTSTRAP right, and is the broker "
            "up (make kafka)?")


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    out: list[BaseException] = []
    for e in group.exceptions:
        out.extend(_leaves(e) if isinstance(e, BaseExceptionGroup) else [e])
    return out
