"""Settings of the warehouse endpoint and its two users."""

from __future__ import annotations

import ipaddress
from typing import Annotated

from msgspec import Meta

from gpufleet.config import BusSettings


class WarehouseSettings(BusSettings, frozen=True, kw_only=True):
    """``gpufleet warehouse serve`` and ``migrate``.

    The writer is the user the services connect as (``clickhouse_url`` names it: ``default``
    with an empty password out of the box); the analyst may only read.
    """

    warehouse_data: str = ".cache/warehouse"
    warehouse_host: str = "127.0.0.1"
    warehouse_port: Annotated[int, Meta(ge=1, le=65535)] = 8123
    warehouse_writer_user: Annotated[str, Meta(min_length=1)] = "default"
    warehouse_writer_password: str = ""
    warehouse_analyst_user: Annotated[str, Meta(min_length=1)] = "analyst"
    warehouse_analyst_password: str = ""
    warehouse_writers: Annotated[int, Meta(ge=1, le=64)] = 4  # engine handles for writes
    warehouse_readers: Annotated[int, Meta(ge=1, le=64)] = 4  # read-only engine handles
    warehouse_session_timeout_s: Annotated[float, Meta(gt=0)] = 60.0
    warehouse_max_sessions: Annotated[int, Meta(ge=1, le=4096)] = 256
    # the analyst's limits: queries at once, and the longest one may run (its default and cap)
    warehouse_analyst_max_queries: Annotated[int, Meta(ge=1, le=64)] = 2
    warehouse_analyst_max_execution_time_s: Annotated[float, Meta(gt=0)] = 60.0


def exposure_problem(settings: WarehouseSettings) -> str | None:
    """Why the endpoint must not start as configured: listening beyond this machine while a
    user has no password. None when it may."""
    host = settings.warehouse_host
    if host == "localhost" or _loopback(host):
        return None
    missing = [name for name, pw in (
        ("GPUFLEET_WAREHOUSE_WRITER_PASSWORD", settings.warehouse_writer_password),
        ("GPUFLEET_WAREHOUSE_ANALYST_PASSWORD", settings.warehouse_analyst_password)) if not pw]
    if not missing:
        return None
    return (f"warehouse: refusing to listen on {host} without passwords: set "
            f"{' and '.join(missing)} (or listen on 127.0.0.1)")


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
