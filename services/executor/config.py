"""Settings of the executor (``GPUFLEET_*`` variables)."""

from __future__ import annotations

import socket
from typing import Annotated, Literal

from msgspec import Meta, field

from gpufleet.config import BusSettings


def _hostname() -> str:
    return socket.gethostname() or "node"


class ExecutorSettings(BusSettings, frozen=True, kw_only=True):
    node: Annotated[str, Meta(min_length=1)] = field(default_factory=_hostname)
    mode: Literal["process", "sim"] = "process"  # run commands, or simulate runs
    gpus: Annotated[int, Meta(ge=-1, le=64)] = -1  # -1: count them with NVML
    state_dir: str = ""  # default: $GPUFLEET_CACHE/executor (.cache/executor)
    heartbeat_s: Annotated[float, Meta(gt=0)] = 10.0
    max_placement_age_s: Annotated[float, Meta(gt=0)] = 600.0  # older placements are ignored
    # a placement whose GPUs jobs here still hold waits this long for them, then fails
    busy_wait_s: Annotated[float, Meta(ge=0)] = 30.0
    default_sim_duration_s: Annotated[float, Meta(gt=0)] = 60.0
    flush_timeout_s: Annotated[float, Meta(ge=0)] = 5.0
    send_timeout_s: Annotated[float, Meta(gt=0)] = 10.0
    # the longest wait for a delivery before the producer is replaced; readiness turns red when
    # messages have waited this long with none getting through
    delivery_timeout_s: Annotated[float, Meta(gt=0)] = 30.0
    ops_host: str = "0.0.0.0"
    executor_ops_port: Annotated[int, Meta(ge=0, le=65535)] = 9402  # 0: no ops endpoint
