"""HTTP sessions (``session_id``): a session keeps its own engine handle (its temporary tables
live there), its settings and database. A session belongs to one user: another user naming the
same id gets a session of its own. One request at a time runs in a session, as in ClickHouse."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from services.warehouse.engine import Handle
from services.warehouse.errors import (
    SESSION_IS_LOCKED,
    SESSION_NOT_FOUND,
    TOO_MANY_SIMULTANEOUS_QUERIES,
    ClickHouseError,
)


@dataclass
class Session:
    handle: Handle
    settings: dict[str, str] = field(default_factory=dict)  # name -> SQL literal
    database: str | None = None
    expires: float = 0.0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class Sessions:
    """Sessions by (user, id); one ends ``timeout`` seconds after its last request, and its
    handle is closed. ``opener(readonly)`` makes a handle, ``closer(handle)`` closes one."""

    def __init__(self, timeout_s: float, opener: Callable[[bool], Handle],
                 closer: Callable[[Handle], None], max_sessions: int = 32,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._timeout = timeout_s
        self._open = opener
        self._close = closer
        self._max = max_sessions
        self._clock = clock
        self._by_key: dict[tuple[str, str], Session] = {}

    def get(self, user: str, session_id: str, *, readonly: bool, must_exist: bool = False,
            timeout_s: float | None = None) -> Session:
        now = self._clock()
        self.expire(now)
        session = self._by_key.get((user, session_id))
        if session is None:
            if must_exist:
                raise ClickHouseError(SESSION_NOT_FOUND,
                                      f"DB::Exception: Session {session_id} not found")
            if len(self._by_key) >= self._max:
                raise ClickHouseError(TOO_MANY_SIMULTANEOUS_QUERIES,
                                      f"DB::Exception: Too many sessions ({self._max}); end one "
                                      "or wait for one to expire")
            session = self._by_key[(user, session_id)] = Session(self._open(readonly))
        session.expires = now + (timeout_s or self._timeout)
        return session

    def expire(self, now: float) -> None:
        """End the sessions past their time (not one that is running a request)."""
        for key, session in list(self._by_key.items()):
            if session.expires <= now and not session.lock.locked():
                del self._by_key[key]
                self._close(session.handle)

    def close(self) -> None:
        for session in self._by_key.values():
            self._close(session.handle)
        self._by_key.clear()

    def __len__(self) -> int:
        return len(self._by_key)


def busy(session_id: str) -> ClickHouseError:
    return ClickHouseError(SESSION_IS_LOCKED, f"DB::Exception: Session {session_id} is locked "
                           "by a concurrent client.")
