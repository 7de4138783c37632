"""Settings of the warehouse endpoint and its two users."""

from __future__ import annotations

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
