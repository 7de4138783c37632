"""The one way the services talk to the warehouse: clickhouse-connect's synchronous client,
without a session id (so that concurrent callers may share one client), called from async code
through ``asyncio.to_thread``. clickhouse-connect's async client is this same client run in a
thread pool, so one style is enough.
"""

from __future__ import annotations

from typing import Any


def client(url: str, connect_timeout_s: float = 10.0, send_receive_timeout_s: float = 300.0
           ) -> Any:
    """A client for ``http://user:password@host:port/database`` (it connects at once: call
    it through ``asyncio.to_thread`` from async code)."""
    import clickhouse_connect

    return clickhouse_connect.get_client(dsn=url, autogenerate_session_id=False,
                                         connect_timeout=connect_timeout_s,
                                         send_receive_timeout=send_receive_timeout_s)
