"""run_service and supervise: a clean stop is 0; a background task that dies, or ends while
the service runs, stops the process with 1 and one line that says which task and why."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import pytest

from gpufleet.runner import Spawned, run_service, supervise

Main = Callable[[asyncio.Event], Awaitable[None]]


async def forever(stop: asyncio.Event) -> None:
    await stop.wait()


async def raises(stop: asyncio.Event) -> None:
    await asyncio.sleep(0.01)
    raise ValueError("invalid literal for int(): 'boom'")


async def returns(stop: asyncio.Event) -> None:
    await asyncio.sleep(0.01)


def service(background: Callable[[asyncio.Event], Awaitable[None]], *,
            stops_itself: bool = False) -> Main:
    """A service with a task that runs until stop, and ``background`` beside it."""

    async def main(stop: asyncio.Event) -> None:
        async with asyncio.TaskGroup() as tasks:
            supervise(tasks, "steady", forever(stop), until=stop)
            supervise(tasks, "worker", background(stop), until=stop)  # type: ignore[arg-type]
            if stops_itself:
                await asyncio.sleep(0.05)
                stop.set()
    return main


@pytest.mark.parametrize(("background", "code", "line"), [
    (forever, 0, None),
    (raises, 1, "svc stopped: worker died: ValueError: invalid literal for int(): 'boom'"),
    (returns, 1, "svc stopped: worker ended while the service was still running"),
])
def test_a_dead_task_stops_the_service_with_one_line(
    background: Callable[[asyncio.Event], Awaitable[None]], code: int, line: str | None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="gpufleet.runner"):
        assert run_service(service(background, stops_itself=True), name="svc") == code
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == ([line] if line else [])


def test_a_task_that_ends_after_stop_is_a_clean_stop() -> None:
    async def main(stop: asyncio.Event) -> None:
        async with asyncio.TaskGroup() as tasks:
            supervise(tasks, "worker", returns(stop), until=stop)
            stop.set()

    assert run_service(main) == 0


def test_an_error_outside_the_tasks_is_not_hidden() -> None:
    async def main(stop: asyncio.Event) -> None:
        raise RuntimeError("a bug in main")

    with pytest.raises(RuntimeError, match="a bug in main"):
        run_service(main)


@pytest.mark.parametrize(("job", "code", "line"), [
    (returns, 0, None),  # short-lived tasks may end
    (raises, 1, "svc stopped: a job watcher task died: ValueError: invalid literal for int():"
                " 'boom'"),
])
def test_a_spawned_task_that_raises_stops_the_service(
    job: Callable[[asyncio.Event], Awaitable[None]], code: int, line: str | None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def main(stop: asyncio.Event) -> None:
        spawned = Spawned("job watcher")
        async with asyncio.TaskGroup() as tasks:
            supervise(tasks, "jobs", spawned.watch(stop), until=stop)
            spawned.spawn(job(stop))  # type: ignore[arg-type]
            await asyncio.sleep(0.05)
            stop.set()
        await spawned.close()

    with caplog.at_level(logging.INFO, logger="gpufleet.runner"):
        assert run_service(main, name="svc") == code
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == ([line] if line else [])
