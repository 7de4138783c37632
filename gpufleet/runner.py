"""Running one async service in the foreground: SIGTERM and Ctrl-C stop it cleanly, and a
background task that dies takes the process down with one clear line.

A service starts its background tasks with ``supervise`` in an ``asyncio.TaskGroup``. A task
that raises, or that returns while it was meant to run on, raises ``TaskDied``; the group
cancels the others, and ``run_service`` logs the one line and returns 1. No process stays
alive with a part of it dead. Short-lived tasks started one by one (a job's watcher) go through
a ``Spawned``, whose ``watch`` is supervised in turn: the first of them to raise stops it too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any

log = logging.getLogger(__name__)


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


def run_service(main: Callable[[asyncio.Event], Awaitable[None]], log_level: str = "INFO",
                name: str = "gpufleet") -> int:
    """Run ``main(stop)``; ``stop`` is set on SIGTERM/SIGINT and main is expected to return.

    A second signal cancels main outright. Returns 0 after a clean stop, 1 when a background
    task died (one line on the log says which and why).
    """
    logging.getLogger().setLevel(log_level.upper())

    async def _go() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()

        def _signal() -> None:
            if stop.is_set() and task is not None:
                task.cancel()
            stop.set()

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, _signal)
        await main(stop)

    try:
        with contextlib.suppress(asyncio.CancelledError, KeyboardInterrupt):
            asyncio.run(_go())
    except TaskDied as e:
        log.error("%s stopped: %s", name, e)
        return 1
    except BaseExceptionGroup as group:
        dead, rest = group.split(TaskDied)
        if dead is None or rest is not None:
            raise
        log.error("%s stopped: %s", name, "; ".join(map(str, _leaves(dead))))
        return 1
    return 0


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
        KafkaConnectionError: lambda e: (
            f"cannot reach Kafka ({e}); is GPUFLEET_KAFKA_BOOTSTRAP right, and is the broker up "
            "(make kafka)?"),
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


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    out: list[BaseException] = []
    for e in group.exceptions:
        out.extend(_leaves(e) if isinstance(e, BaseExceptionGroup) else [e])
    return out
