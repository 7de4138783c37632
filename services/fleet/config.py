"""Settings of the fleet simulator (``GPUFLEET_*`` variables; ``make run`` sets SIM_NODES)."""

from __future__ import annotations

from typing import Annotated

from msgspec import Meta

from gpufleet.config import BusSettings


class FleetSettings(BusSettings, frozen=True, kw_only=True):
    sim_nodes: Annotated[int, Meta(ge=1, le=100_000)] = 16
    sim_gpus_per_node: Annotated[int, Meta(ge=1, le=64)] = 8
    sim_models: str = "H100-80GB,A100-80GB"  # given to the nodes in turn
    sim_node_prefix: str = "sim"
    sim_duration_s: Annotated[float, Meta(ge=0)] = 0.0  # 0: run until stopped
    interval_s: Annotated[float, Meta(ge=0.1, le=60)] = 1.0
    processes_every_s: Annotated[float, Meta(ge=0)] = 5.0
    health_every_s: Annotated[float, Meta(ge=0)] = 60.0
    buffer_samples_per_node: Annotated[int, Meta(ge=1)] = 60
    heartbeat_s: Annotated[float, Meta(gt=0)] = 10.0
    max_placement_age_s: Annotated[float, Meta(gt=0)] = 600.0
    # a placement whose GPUs jobs here still hold waits this long for them, then fails
    busy_wait_s: Annotated[float, Meta(ge=0)] = 30.0
    default_sim_duration_s: Annotated[float, Meta(gt=0)] = 60.0
    send_timeout_s: Annotated[float, Meta(gt=0)] = 10.0
    # the longest wait for a delivery before the producer is replaced; readiness turns red when
    # messages have waited this long with none getting through
    delivery_timeout_s: Annotated[float, Meta(gt=0)] = 30.0
    flush_timeout_s: Annotated[float, Meta(ge=0)] = 5.0
    state_dir: str = ""  # default: $GPUFLEET_CACHE/executor (.cache/executor)
    ops_host: str = "0.0.0.0"
    fleet_ops_port: Annotated[int, Meta(ge=0, le=65535)] = 9403  # 0: no ops endpoint
