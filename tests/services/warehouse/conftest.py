"""A real warehouse for the session: ``gpufleet warehouse serve`` as a subprocess on a free
port with a temporary data directory, migrated once. Other services' tests can use
``services.warehouse.testing.start_warehouse`` the same way."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import clickhouse_connect
import pytest

from gpufleet.localkafka import free_port
from services.warehouse.testing import migrated, start_warehouse, stop_warehouse, url

ANALYST_PASSWORD = "s3cret"
ANALYST_MAX_EXECUTION_TIME_S = 8  # the analyst's cap in the test warehouse
ANALYST_MAX_QUERIES = 2


@dataclass(frozen=True)
class Warehouse:
    port: int
    data: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def writer_url(self) -> str:
        return url(self.port)

    def client(self, user: str = "default", password: str = "", **kw: Any) -> Any:
        return clickhouse_connect.get_client(host="127.0.0.1", port=self.port, username=user,
                                             password=password, **kw)

    def analyst(self, **kw: Any) -> Any:
        return self.client("analyst", ANALYST_PASSWORD, **kw)


@pytest.fixture(scope="session")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Warehouse]:
    data = tmp_path_factory.mktemp("warehouse") / "data"
    port = free_port()
    proc = start_warehouse(data, port, env={
        "GPUFLEET_WAREHOUSE_ANALYST_PASSWORD": ANALYST_PASSWORD,
        "GPUFLEET_WAREHOUSE_ANALYST_MAX_EXECUTION_TIME_S": str(ANALYST_MAX_EXECUTION_TIME_S),
        "GPUFLEET_WAREHOUSE_ANALYST_MAX_QUERIES": str(ANALYST_MAX_QUERIES)})
    try:
        migrated(port)
        yield Warehouse(port, data)
    finally:
        stop_warehouse(proc)


@pytest.fixture
def writer(warehouse: Warehouse) -> Iterator[Any]:
    client = warehouse.client()
    yield client
    client.close()


@pytest.fixture
def analyst(warehouse: Warehouse) -> Iterator[Any]:
    client = warehouse.analyst()
    yield client
    client.close()
