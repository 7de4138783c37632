"""HTTP sessions (``session_id``): the settings and database a client set with SET and USE."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from services.warehouse.errors import SESSION_NOT_FOUND, ClickHouseError


@dataclass
class Session:
    settings: dict[str, str] = field(default_factory=dict)  # name -> SQL literal
    database: str | None = None
    expires: float = 0.0


class Sessions:
    """Sessions by (user, id); one expires ``timeout`` seconds after its last request."""

    def __init__(self, timeout_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._timeout = timeout_s
        self._clock = clock
        self._by_key: dict[tuple[str, str], Session] = {}

    def get(self, user: str, session_id: str, *, must_exist: bool = False,
            timeout_s: float | None = None) -> Session:
        now = self._clock()
        self._by_key = {k: s for k, s in self._by_key.items() if s.expires > now}
        session = self._by_key.get((user, session_id))
        if session is None:
            if must_exist:
                raise ClickHouseError(SESSION_NOT_FOUND,
                                      f"DB::Exception: Session {session_id} not found")
            session = self._by_key[(user, session_id)] = Session()
        session.expires = now + (timeout_s or self._timeout)
        return session

    def __len__(self) -> int:
        return len(self._by_key)
