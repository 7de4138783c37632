"""The service's handling of Kafka errors: a transient one ends the session and a new one starts
from the committed state; any other stops the process with one line and a non-zero status."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka.errors import (
    KafkaConnectionError,
    LeaderNotAvailableError,
    ProducerFenced,
    TopicAuthorizationFailedError,
)

from gpufleet.config import BusSettings
from gpufleet.localkafka import free_port
from gpufleet.ops import Metrics
from services.scheduler import driver
from services.scheduler.__main__ import said, serve
from services.scheduler.config import SchedulerSettings
from services.scheduler.reading import RecoveryIncomplete


class Elected:
    """An election this instance wins ``times`` times, then loses for good."""

    def __init__(self, times: int) -> None:
        self.times = times
        self.leading = True

    async def wait_to_lead(self, stop: asyncio.Event) -> bool:
        if stop.is_set() or self.times == 0:
            return False
        self.times -= 1
        return True

    def check(self) -> None:
        pass


@pytest.mark.parametrize(("name", "errors", "sessions"), [
    ("the broker restarts: a new session", [KafkaConnectionError()], 2),
    ("no leader for a while: new sessions", [LeaderNotAvailableError()] * 3, 4),
    ("fenced by a transaction timeout: a new session", [ProducerFenced()], 2),
    ("the client's sender died mid-commit: a new session", [asyncio.CancelledError()], 2),
])
async def test_a_transient_error_starts_a_new_session(
        monkeypatch: pytest.MonkeyPatch, name: str, errors: list[BaseException],
        sessions: int) -> None:
    calls: list[int] = []
    stop = asyncio.Event()

    async def session(*_: object) -> None:
        calls.append(1)
        if len(calls) <= len(errors):
            raise errors[len(calls) - 1]
        stop.set()

    monkeypatch.setattr(driver, "session", session)
    monkeypatch.setattr(driver, "RETRY_S", (0.01,))
    metrics = Metrics()
    ready = {"active": False, "recovered": False}
    await driver.lead(SchedulerSettings(), stop, Elected(10), metrics,  # type: ignore[arg-type]
                      ready)
    assert len(calls) == sessions, name
    assert metrics.value("scheduler_sessions_restarted_total") == len(errors)
    assert ready == {"active": False, "recovered": False}


async def test_another_error_ends_the_lead(monkeypatch: pytest.MonkeyPatch) -> None:
    async def session(*_: object) -> None:
        raise TopicAuthorizationFailedError()

    monkeypatch.setattr(driver, "session", session)
    with pytest.raises(TopicAuthorizationFailedError):
        await driver.lead(SchedulerSettings(), asyncio.Event(), Elected(10),  # type: ignore[arg-type]
                          Metrics(), {})


@pytest.mark.integration
async def test_a_fatal_error_stops_the_service_and_is_said_in_one_line(
        monkeypatch: pytest.MonkeyPatch, bus: BusSettings) -> None:
    async def lead(*_: object) -> None:
        raise TopicAuthorizationFailedError("not allowed to write jobs.placements")

    monkeypatch.setattr(driver, "lead", lead)
    settings = SchedulerSettings(kafka_bootstrap=bus.kafka_bootstrap,
                                 topic_prefix=bus.topic_prefix, cluster=bus.cluster,
                                 scheduler_ops_host="127.0.0.1", scheduler_ops_port=free_port())
    with pytest.raises(ExceptionGroup) as stopped:
        await serve(settings, asyncio.Event())
    [error] = stopped.value.exceptions
    assert isinstance(error, TopicAuthorizationFailedError)
    say = next(s for kind, s in said(settings).items() if isinstance(error, kind))
    line = say(error)
    assert "\n" not in line and line.startswith("a Kafka error that retrying cannot fix: "
                                                "TopicAuthorizationFailedError"), line


@pytest.mark.parametrize(("error", "start"), [
    (KafkaConnectionError("Unable to bootstrap"), "cannot reach Kafka at "),
    (TopicAuthorizationFailedError(), "a Kafka error that retrying cannot fix"),
    (RecoveryIncomplete("recovery read 3 records"), "recovery read 3 records; exiting"),
    (ValueError("a bug"), "ValueError: a bug"),
])
def test_what_stops_the_scheduler_is_said_in_one_line(error: Exception, start: str) -> None:
    say = next(s for kind, s in said(SchedulerSettings()).items() if isinstance(error, kind))
    assert say(error).startswith(start)


async def test_a_stop_while_a_session_runs_is_not_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    stop = asyncio.Event()

    async def session(*_: object) -> None:
        stop.set()
        raise asyncio.CancelledError  # the second signal's cancel

    monkeypatch.setattr(driver, "session", session)
    with pytest.raises(asyncio.CancelledError):
        await driver.lead(SchedulerSettings(), stop, Elected(10),  # type: ignore[arg-type]
                          Metrics(), {})
