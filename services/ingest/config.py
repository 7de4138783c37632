"""Settings of the ingest workers (``GPUFLEET_*`` variables, see docs/ingest.md)."""

from __future__ import annotations

from typing import Annotated

from msgspec import Meta

from gpufleet.config import BusSettings


class IngestSettings(BusSettings, frozen=True, kw_only=True):
    ingest_group_id: str = "gpufleet-ingest"
    ingest_workers: Annotated[int, Meta(ge=1)] = 1
    batch_max_rows: Annotated[int, Meta(ge=1)] = 50_000  # GPU-sample rows per flush
    batch_within_s: Annotated[float, Meta(gt=0)] = 1.0  # flush at least this often
    window_s: Annotated[int, Meta(ge=1)] = 60
    grace_s: Annotated[float, Meta(ge=0)] = 30.0  # late samples within this still count
    # energy counter readings further apart than this: the energy between goes to no window
    energy_gap_s: Annotated[float, Meta(gt=0)] = 120.0
    max_future_s: Annotated[float, Meta(ge=0)] = 300.0  # later timestamps are impossible
    idle_util_threshold: Annotated[float, Meta(ge=0, le=100)] = 5.0
    idle_after_s: Annotated[float, Meta(gt=0)] = 600.0  # allocated and idle this long: alert
    job_retention_s: Annotated[float, Meta(gt=0)] = 86_400.0  # ended jobs kept for attribution
    # a job no placement vouches for owns its GPUs only this long after its last event
    job_lease_s: Annotated[float, Meta(gt=0)] = 60.0
    # how soon a dead worker's partitions move to the others
    ingest_session_timeout_ms: Annotated[int, Meta(ge=6000)] = 10_000
    # at stop, how long the last flush waits for a warehouse that is away (the rest is read
    # again at the next start)
    ingest_stop_flush_s: Annotated[float, Meta(ge=0)] = 20.0
    ingest_ops_host: str = "0.0.0.0"
    ingest_ops_port: int = 9104  # worker i serves on this + i; 0: none
