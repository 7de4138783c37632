"""`gpufleet up`'s ports: defaults, moved as a block by --base-port, a set variable wins."""

from __future__ import annotations

import pytest

from gpufleet.admin import up_ports
from gpufleet.admin.up_ports import PortError, plan, stack_env

DEFAULTS = {s.var: s.default for s in up_ports.PORTS}


@pytest.mark.parametrize(
    ("env", "base", "expected"),
    [
        ({}, None, DEFAULTS),
        ({}, 30000, {s.var: 30000 + i for i, s in enumerate(up_ports.PORTS)}),
        ({"GPUFLEET_API_PORT": "8181"}, None, {**DEFAULTS, "GPUFLEET_API_PORT": 8181}),
        ({"GPUFLEET_KAFKA_PORT": "19092"}, 30000,
         {**{s.var: 30000 + i for i, s in enumerate(up_ports.PORTS)},
          "GPUFLEET_KAFKA_PORT": 19092}),
        ({"GPUFLEET_FLEET_OPS_PORT": "0"}, None, {**DEFAULTS, "GPUFLEET_FLEET_OPS_PORT": 0}),
    ],
    ids=["defaults", "base-port", "variable", "variable-wins-over-base", "zero-is-off"],
)
def test_plan(env: dict[str, str], base: int | None, expected: dict[str, int]) -> None:
    assert plan(env, base) == expected


@pytest.mark.parametrize(
    ("env", "base", "says"),
    [
        ({"GPUFLEET_API_PORT": "http"}, None, "GPUFLEET_API_PORT='http': not a port"),
        ({"GPUFLEET_WAREHOUSE_PORT": "70000"}, None, "GPUFLEET_WAREHOUSE_PORT='70000'"),
        ({}, 80, "--base-port 80"),
        ({}, 65533, "--base-port 65533"),
    ],
)
def test_bad_ports_are_one_clear_line(env: dict[str, str], base: int | None, says: str) -> None:
    with pytest.raises(PortError, match=says.replace("(", r"\(")):
        plan(env, base)


def test_the_warehouse_address_moves_with_its_port() -> None:
    env = stack_env({}, plan({}, 30000))
    assert env["GPUFLEET_CLICKHOUSE_URL"] == "http://default:@localhost:30002/default"
    assert env["GPUFLEET_API_PORT"] == "30003"
    named = stack_env({"GPUFLEET_CLICKHOUSE_URL": "http://ch:8123"}, plan({}, 30000))
    assert named["GPUFLEET_CLICKHOUSE_URL"] == "http://ch:8123"
