"""Settings of the telemetry publisher (``GPUFLEET_*`` variables)."""

from __future__ import annotations

import socket
from typing import Annotated, Literal

from msgspec import Meta, field

from gpufleet.config import BusSettings


def _hostname() -> str:
    return socket.gethostname() or "node"


class TelemetrySettings(BusSettings, frozen=True, kw_only=True):
    node: Annotated[str, Meta(min_length=1)] = field(default_factory=_hostname)
    source: Literal["nvml", "sim"] = "nvml"
    interval_s: Annotated[float, Meta(ge=0.1, le=60)] = 1.0
    processes_every_s: Annotated[float, Meta(ge=0)] = 5.0
    health_every_s: Annotated[float, Meta(ge=0)] = 60.0
    buffer_samples: Annotated[int, Meta(ge=1)] = 600  # node samples held while Kafka is away
    send_timeout_s: Annotated[float, Meta(gt=0)] = 10.0
    # the longest wait for a delivery before the producer is replaced; readiness turns red when
    # messages have waited this long with none getting through
    delivery_timeout_s: Annotated[float, Meta(gt=0)] = 30.0
    flush_timeout_s: Annotated[float, Meta(ge=0)] = 5.0
    sim_gpus: Annotated[int, Meta(ge=1, le=64)] = 8
    sim_model: str = "H100-80GB"
    sim_seed: int | None = None
    state_dir: str = ""  # the executor's state folder, read by the simulated source
    ops_host: str = "0.0.0.0"
    telemetry_ops_port: Annotated[int, Meta(ge=0, le=65535)] = 9401  # 0: no ops endpoint
