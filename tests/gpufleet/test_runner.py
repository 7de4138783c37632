"""run_service and supervise: a clean stop is 0; a background task that dies, or ends while
the service runs, stops the process with 1 and one line that says which task and why."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import pytest

from gpufleet.runner import Spawned, run_service, running, supervise

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


def test_running_ends_tasks_then_the_last_ones_then_closes_newest_first() -> None:
    order: list[str] = []

    async def worker(stop: asyncio.Event) -> None:
        await stop.wait()
        await asyncio.sleep(0.02)  # ends a little after stop: the sender must wait for it
        order.append("worker ended")

    async def sender(drained: asyncio.Event) -> None:
        await drained.wait()
        order.append("sender ended")

    async def close(what: str) -> None:
        order.append(f"{what} closed")

    async def main(stop: asyncio.Event) -> None:
        async with running(stop) as service:
            service.on_exit(lambda: close("first"))
            service.on_exit(lambda: order.append("second closed"))  # a plain call works too
            service.last("sender", sender)
            service.task("worker", worker(stop))
            stop.set()

    assert run_service(main) == 0
    assert order == ["worker ended", "sender ended", "second closed", "first closed"]


def test_a_block_without_tasks_ends_when_it_returns() -> None:
    async def main(stop: asyncio.Event) -> int:
        async with running(stop):
            pass  # the work was in the foreground
        return 3

    assert run_service(main) == 3


@pytest.mark.parametrize(("fault", "line"), [
    ("task", "svc stopped: worker died: ValueError: invalid literal for int(): 'boom'"),
    ("known", "svc stopped: the warehouse said no"),
])
def test_a_service_that_fails_is_closed_and_said_in_one_line(
        fault: str, line: str, caplog: pytest.LogCaptureFixture) -> None:
    closed: list[str] = []

    async def main(stop: asyncio.Event) -> None:
        async with running(stop) as service:
            service.on_exit(lambda: closed.append("ops"))
            if fault == "task":
                service.task("worker", raises(stop))
            else:
                raise PermissionError("the warehouse said no")

    with caplog.at_level(logging.INFO, logger="gpufleet.runner"):
        assert run_service(main, name="svc", known={PermissionError: str}) == 1
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == [line]
    assert closed == ["ops"]


def test_an_unknown_error_in_a_service_is_raised() -> None:
    async def main(stop: asyncio.Event) -> None:
        async with running(stop):
            raise RuntimeError("a bug")

    with pytest.raises(ExceptionGroup) as raised:
        run_service(main, known={PermissionError: str})
    assert raised.group_contains(RuntimeError, match="a bug")
