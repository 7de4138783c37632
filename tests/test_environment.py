"""The virtual environment that `make test` builds has every given package."""

from __future__ import annotations

import importlib

import pytest


@pytest.mark.parametrize(
    "module", ["pynvml", "faust", "aiokafka", "msgspec", "clickhouse_connect", "aiohttp", "chdb"]
)
def test_given_package_imports(module: str) -> None:
    assert importlib.import_module(module).__name__ == module
