"""What a service retries, and how: only faults that pass (the warehouse or the broker away
for a while), with capped exponential backoff, for as long as they last. Everything else (bad
credentials, a table that does not match) is raised, for the service to stop with one line.

An ``Outage`` is what a service shows of a fault while it waits: one log line when it begins,
one a minute while it lasts, one when it ends; a gauge and a counter in ``/metrics``; and
``/readyz`` red.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from aiokafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError, ProducerFenced
from clickhouse_connect.driver.exceptions import Error as ClickHouseError
from clickhouse_connect.driver.exceptions import OperationalError
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    wait_exponential,
    wait_random,
)

from gpufleet.ops import Metrics

log = logging.getLogger(__name__)
T = TypeVar("T")

# ClickHouse error codes that a later try can get past: the server is busy, short of memory,
# restarting or cut off from its replicas (ErrorCodes.cpp).
TRANSIENT_CODES = frozenset({
    3,  # UNEXPECTED_END_OF_FILE
    159, 160,  # TIMEOUT_EXCEEDED, TOO_SLOW
    202, 203,  # TOO_MANY_SIMULTANEOUS_QUERIES, NO_FREE_CONNECTION
    209, 210,  # SOCKET_TIMEOUT, NETWORK_ERROR
    241,  # MEMORY_LIMIT_EXCEEDED
    242,  # TABLE_IS_READ_ONLY (a replica that lost its keeper)
    252,  # TOO_MANY_PARTS
    285, 286,  # TOO_FEW_LIVE_REPLICAS, UNSATISFIED_QUORUM_FOR_PREVIOUS_WRITE
    319,  # UNKNOWN_STATUS_OF_INSERT
    394,  # QUERY_WAS_CANCELLED (a server shutting down)
    425,  # SYSTEM_ERROR
    439,  # CANNOT_SCHEDULE_TASK
    999,  # KEEPER_EXCEPTION
    1000,  # POCO_EXCEPTION (the server's own network layer)
})
_GATEWAY = re.compile(r"HTTP status (502|503|504)\b")
MAX_WAIT_S = 30.0
REMIND_EVERY_S = 60.0


def warehouse_transient(e: BaseException) -> bool:
    """Whether a ClickHouse client error may pass by itself: the server unreachable (no code),
    a proxy's 502/503/504, or one of ``TRANSIENT_CODES``."""
    if isinstance(e, OSError):
        return True
    if not isinstance(e, ClickHouseError):
        return False
    code = getattr(e, "code", None)
    if code is None:
        return isinstance(e, OperationalError) or bool(_GATEWAY.search(str(e)))
    return code in TRANSIENT_CODES


def kafka_transient(error: BaseException | None) -> bool:
    """Whether a Kafka client error may pass by itself (the broker restarting, a leader moving,
    a newer transactional producer that has since gone), or was raised because of such an
    error (the client wraps a lost connection in a plain ``KafkaError`` when it looks for its
    coordinator). Anything else (a refused login, a bug) is not retried."""
    seen = 0
    while error is not None and seen < 10:
        if isinstance(error, KafkaConnectionError | KafkaTimeoutError | ProducerFenced) or (
                isinstance(error, KafkaError) and getattr(error, "retriable", False)):
            return True
        error, seen = error.__cause__, seen + 1
    return False


def first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"[:300]


@dataclass
class Outage:
    """One dependency (``what``) and whether it is away; fed by ``retrying``."""

    what: str  # "warehouse", "broker": its first word names the metrics
    metrics: Metrics | None = None
    service: str = "ingest"  # the metrics' prefix
    clock: Callable[[], float] = time.monotonic
    since: float | None = None
    last_error: str = ""
    _reminded: float = field(default=0.0, repr=False)

    @property
    def down(self) -> bool:
        return self.since is not None

    def seconds(self) -> float:
        return 0.0 if self.since is None else self.clock() - self.since

    def failed(self, error: BaseException, next_try_s: float) -> None:
        now = self.clock()
        self.last_error = first_line(error)
        if self.since is None:
            self.since = self._reminded = now
            log.warning("%s unavailable (%s): holding the records, retrying with backoff "
                        "(at most %.0f s apart) for as long as it lasts; not ready meanwhile",
                        self.what, self.last_error, MAX_WAIT_S)
        elif now - self._reminded >= REMIND_EVERY_S:
            self._reminded = now
            log.warning("%s still unavailable after %.0f s (%s); next try in %.1f s",
                        self.what, now - self.since, self.last_error, next_try_s)
        self._gauge(1)
        if self.metrics is not None:
            self.metrics.inc(f"{self.service}_{self._name}_retries_total",
                             help=f"tries that failed while the {self.what} was away")

    def recovered(self) -> None:
        if self.since is not None:
            log.warning("%s back after %.0f s; catching up", self.what, self.seconds())
            self.since = None
            self._gauge(0)

    def _gauge(self, value: int) -> None:
        if self.metrics is not None:
            self.metrics.set(f"{self.service}_{self._name}_unavailable", value,
                             help=f"1 while the {self.what} is away (waited for)")

    @property
    def _name(self) -> str:
        return self.what.split()[0]


async def retrying(outage: Outage, transient: Callable[[BaseException], bool],
                   call: Callable[[], Awaitable[T]], max_wait_s: float = MAX_WAIT_S) -> T:
    """``await call()`` until it succeeds, retrying only errors that ``transient`` accepts,
    with exponential backoff (0.2 s doubling, at most ``max_wait_s``, jittered); any other
    error is raised at once."""

    def before_sleep(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        wait = state.next_action.sleep if state.next_action is not None else 0.0
        if error is not None:
            outage.failed(error, wait)

    async for attempt in AsyncRetrying(
            retry=retry_if_exception(transient), reraise=True, before_sleep=before_sleep,
            wait=wait_exponential(multiplier=0.1, max=max_wait_s) + wait_random(0, 0.2)):
        with attempt:
            result = await call()
    outage.recovered()
    return result
