"""What is retried (faults that pass) and what is raised at once (the rest)."""

from __future__ import annotations

import logging

import pytest
from aiokafka.errors import (
    CommitFailedError,
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    LeaderNotAvailableError,
    NodeNotReadyError,
    NotCoordinatorForGroupError,
    ProducerFenced,
    TopicAuthorizationFailedError,
    UnsupportedVersionError,
)
from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError, ProgrammingError

from gpufleet.bus import connect
from gpufleet.ops import Metrics
from gpufleet.retry import Outage, kafka_transient, retrying, warehouse_transient


def _caused_by(error: Exception, cause: BaseException) -> Exception:
    error.__cause__ = cause
    return error


@pytest.mark.parametrize(("error", "transient"), [
    (OperationalError("Error HTTPConnectionPool: Connection refused"), True),  # server away
    (ConnectionRefusedError(111, "refused"), True),
    (DatabaseError("HTTP driver received HTTP status 503"), True),  # a proxy in front of it
    (DatabaseError("too many parts", code=252), True),
    (DatabaseError("memory limit", code=241), True),
    (OperationalError("timeout", code=159), True),
    (DatabaseError("Authentication failed", code=516), False),  # bad credentials
    (DatabaseError("Wrong password", code=193), False),
    (DatabaseError("Table default.gpu_samples does not exist", code=60), False),  # the schema
    (DatabaseError("No such column", code=16), False),
    (DatabaseError("Type mismatch", code=53), False),
    (DatabaseError("HTTP driver received HTTP status 400"), False),
    (ProgrammingError("bad use"), False),
    (ValueError("a bug"), False),
    (KafkaConnectionError(), False),  # a Kafka error is not the warehouse's
])
def test_warehouse_transient(error: BaseException, transient: bool) -> None:
    assert warehouse_transient(error) is transient


@pytest.mark.parametrize(("error", "transient"), [
    (KafkaConnectionError(), True),
    (LeaderNotAvailableError(), True),
    (NotCoordinatorForGroupError(), True),
    (CommitFailedError(), False),  # the partitions moved: retrying the same commit is wrong
    (TopicAuthorizationFailedError(), False),
    (OSError(), False),
    (RuntimeError(), False),
    (KafkaTimeoutError(), True),
    (NodeNotReadyError(), True),
    (ProducerFenced(), True),  # fenced by a transaction timeout or a brief rival, since gone
    (UnsupportedVersionError(), False),  # a broker too old
    # a plain KafkaError raised from its cause, as the client's coordinator lookup does
    (_caused_by(KafkaError("coordinator lookup failed"), KafkaConnectionError()), True),
    (_caused_by(KafkaError("coordinator lookup failed"), TopicAuthorizationFailedError()), False),
])
def test_kafka_transient(error: BaseException, transient: bool) -> None:
    assert kafka_transient(error) is transient


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_retrying_waits_out_transient_errors_and_says_so_once(
        caplog: pytest.LogCaptureFixture) -> None:
    metrics, clock = Metrics(), Clock()
    outage = Outage("warehouse", metrics, clock=clock)
    tries = []

    async def call() -> str:
        tries.append(clock.now)
        clock.now += 1.0
        if len(tries) < 5:
            assert len(tries) == 1 or outage.down
            raise OperationalError("Connection refused")
        return "stored"

    with caplog.at_level(logging.WARNING, logger="gpufleet.retry"):
        assert await retrying(outage, warehouse_transient, call, max_wait_s=0.01) == "stored"
    assert len(tries) == 5 and not outage.down
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 2 and "unavailable" in said[0] and "back after" in said[1], said
    assert metrics.value("ingest_warehouse_retries_total") == 4
    assert metrics.value("ingest_warehouse_unavailable") == 0


async def test_retrying_raises_what_retrying_cannot_fix_at_once() -> None:
    tries = 0

    async def call() -> None:
        nonlocal tries
        tries += 1
        raise DatabaseError("Authentication failed", code=516)

    with pytest.raises(DatabaseError):
        await retrying(Outage("warehouse"), warehouse_transient, call)
    assert tries == 1


class _Client:
    """A Kafka client whose start fails with the errors given, then succeeds."""

    def __init__(self, errors: list[BaseException]) -> None:
        self.errors = errors
        self.stopped = 0

    async def start(self) -> None:
        if self.errors:
            raise self.errors.pop(0)

    async def stop(self) -> None:
        self.stopped += 1


async def test_connect_retries_an_unreachable_broker_and_raises_a_refusal() -> None:
    import asyncio

    away = _Client([KafkaConnectionError(), KafkaConnectionError()])
    assert await connect(lambda: away, asyncio.Event(), retry_s=0.01) is away
    assert away.stopped == 2  # each failed start was closed
    refused = _Client([TopicAuthorizationFailedError()])
    with pytest.raises(TopicAuthorizationFailedError):
        await connect(lambda: refused, asyncio.Event(), retry_s=0.01)
    assert refused.stopped == 1
