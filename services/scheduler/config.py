"""Settings of the scheduler service (``GPUFLEET_*`` variables, see docs/scheduler.md)."""

from __future__ import annotations

from gpufleet.config import BusSettings

DEFAULT_QUEUE_ORDER = ("priority", "quota", "fairshare")
DEFAULT_FILTERS = ("health", "gpumodel", "fits")
DEFAULT_SCORES = ("fgd", "bestfit:0.1", "topology")


class SchedulerSettings(BusSettings, frozen=True, kw_only=True):
    """Which plugins run, in what weight, and how the service talks to Kafka."""

    # Plugins enabled, by name, comma-separated (see plugins/__init__.py for the registry).
    queue_order: str = ",".join(DEFAULT_QUEUE_ORDER)
    filters: str = ",".join(DEFAULT_FILTERS)
    # Score plugins as "name" or "name:weight".
    scores: str = ",".join(DEFAULT_SCORES)
    preemption: bool = True
    backfill: bool = True
    # Per-tenant GPU quotas, "tenant=gpus,..." ; a tenant without one has no quota.
    quotas: str = ""
    quota_borrowing: bool = True
    # Per-tenant fair-share weights, "tenant=weight,..." (default weight 1).
    weights: str = ""
    transactional_id: str = "gpufleet-scheduler"
    group_id: str = "gpufleet-scheduler"
    state_interval_s: float = 2.0
    batch_max: int = 500
    ops_host: str = "0.0.0.0"
    ops_port: int = 9102


def parse_list(text: str) -> list[str]:
    """``"a, b,"`` -> ``["a", "b"]``."""
    return [p.strip() for p in text.split(",") if p.strip()]


def parse_pairs(text: str) -> dict[str, float]:
    """``"a=1,b=2.5"`` -> ``{"a": 1.0, "b": 2.5}``; blanks ignored."""
    out: dict[str, float] = {}
    for part in text.split(","):
        name, sep, value = part.strip().partition("=")
        if sep and name.strip():
            out[name.strip()] = float(value)
    return out
