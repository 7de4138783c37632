"""Where one stack listens: every port of ``gpufleet up``, movable as a block.

Each port has its variable and its default. ``--base-port N`` moves them all to N, N+1, ...
(in the order below) so that two stacks run side by side on one machine; a variable that is
set wins over both. The ingest ops port comes last because worker i serves on it + i.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class PortSlot:
    name: str  # how the port is shown
    var: str  # the variable that sets it
    default: int


PORTS: tuple[PortSlot, ...] = (
    PortSlot("kafka", "GPUFLEET_KAFKA_PORT", 9092),
    PortSlot("kafka controller", "GPUFLEET_KAFKA_CONTROLLER_PORT", 9093),
    PortSlot("warehouse", "GPUFLEET_WAREHOUSE_PORT", 8123),
    PortSlot("api", "GPUFLEET_API_PORT", 8080),
    PortSlot("scheduler ops", "GPUFLEET_SCHEDULER_OPS_PORT", 9102),
    PortSlot("fleet ops", "GPUFLEET_FLEET_OPS_PORT", 9403),
    PortSlot("analytics ops", "GPUFLEET_ANALYTICS_OPS_PORT", 9110),
    PortSlot("ingest ops", "GPUFLEET_INGEST_OPS_PORT", 9104),
)
BLOCK = len(PORTS)


class PortError(Exception):
    """A port setting is not a port; the message names the variable."""


def plan(env: Mapping[str, str], base_port: int | None) -> dict[str, int]:
    """``{variable: port}`` for every slot: the variable if set, else base + offset, else the
    default."""
    if base_port is not None and not 1024 <= base_port <= 65535 - BLOCK:
        raise PortError(f"--base-port {base_port}: needs {BLOCK} ports from 1024 to 65535")
    out: dict[str, int] = {}
    for offset, slot in enumerate(PORTS):
        raw = env.get(slot.var)
        if raw is None:
            out[slot.var] = slot.default if base_port is None else base_port + offset
            continue
        try:
            port = int(raw)
        except ValueError:
            raise PortError(f"{slot.var}={raw!r}: not a port number") from None
        if not 0 <= port <= 65535:
            raise PortError(f"{slot.var}={raw!r}: not a port number")
        out[slot.var] = port
    return out


def stack_env(env: Mapping[str, str], ports: Mapping[str, int]) -> dict[str, str]:
    """The children's environment: every planned port set, and the warehouse's address moved
    with its port unless ``GPUFLEET_CLICKHOUSE_URL`` names one."""
    out = dict(env)
    for var, port in ports.items():
        out[var] = str(port)
    if "GPUFLEET_CLICKHOUSE_URL" not in env:
        user = env.get("GPUFLEET_WAREHOUSE_WRITER_USER", "default")
        password = env.get("GPUFLEET_WAREHOUSE_WRITER_PASSWORD", "")
        wh = ports["GPUFLEET_WAREHOUSE_PORT"]
        out["GPUFLEET_CLICKHOUSE_URL"] = f"http://{user}:{password}@localhost:{wh}/default"
    return out


def describe(ports: Mapping[str, int]) -> str:
    """One line: ``kafka 9092, kafka controller 9093, ...`` (0 is "off")."""
    return ", ".join(f"{s.name} {ports[s.var] or 'off'}" for s in PORTS if s.var in ports)
