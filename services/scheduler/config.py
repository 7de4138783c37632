"""Settings of the scheduler service (``GPUFLEET_*`` variables, see docs/scheduler.md)."""

from __future__ import annotations

from typing import Annotated

from msgspec import Meta

from gpufleet.config import ConfigError, TenantSettings, tenant_values

DEFAULT_QUEUE_ORDER = ("priority", "quota", "fairshare")
DEFAULT_FILTERS = ("health", "gpumodel", "fits")
DEFAULT_SCORES = ("fgd", "bestfit:0.009", "topology")


class SchedulerSettings(TenantSettings, frozen=True, kw_only=True):
    """Which plugins run, in what weight, and how the service talks to Kafka (tenant quotas:
    ``tenant_quotas``, shared with the api)."""

    # Plugins enabled, by name, comma-separated (see plugins/__init__.py for the registry).
    scheduler_queue_order: str = ",".join(DEFAULT_QUEUE_ORDER)
    scheduler_filters: str = ",".join(DEFAULT_FILTERS)
    # Score plugins as "name" or "name:weight".
    scheduler_scores: str = ",".join(DEFAULT_SCORES)
    # Closed-loop plugins that act on the analytics' decisions, comma-separated: "reclaim"
    # (stop idle jobs asked for on ``reclaims``), "opportunistic" (lend GPU share measured idle
    # to the opportunistic queues). Drains: the "drained" filter; measured load: "loadaware".
    scheduler_loop: str = ""
    # Queues whose jobs are opportunistic (plugin "opportunistic"), comma-separated: they may
    # run on GPU share that is allocated but measured idle (p95 under LEND_BELOW_UTIL), and are
    # stopped and requeued when the GPU's p95 reaches OWNERS_BUSY_UTIL.
    scheduler_opportunistic_queues: str = ""
    scheduler_lend_below_util: Annotated[float, Meta(ge=0, le=100)] = 10.0
    scheduler_owners_busy_util: Annotated[float, Meta(ge=0, le=100)] = 50.0
    scheduler_preemption: bool = True
    scheduler_backfill: bool = True
    scheduler_quota_borrowing: bool = True
    # Per-tenant fair-share weights, "tenant=weight,..." (default weight 1).
    scheduler_weights: str = ""
    scheduler_transactional_id: str = ""  # default: <topic_prefix>-scheduler-<cluster>
    scheduler_group_id: str = ""  # default: <topic_prefix>-scheduler-<cluster>
    scheduler_state_interval_s: Annotated[float, Meta(gt=0)] = 2.0
    scheduler_batch_max: Annotated[int, Meta(ge=1)] = 500
    # Longest time recovery may take to read its topics to their end before the process exits.
    scheduler_recovery_timeout_s: Annotated[float, Meta(gt=0)] = 120.0
    # A node not heard from (samples, inventory, its jobs' events) for this long is offline and
    # its jobs are lost; 0 turns node leases off.
    scheduler_node_lease_s: Annotated[float, Meta(ge=0)] = 30.0
    # A placement not reported started by all its members within this long is lost; 0: off.
    scheduler_start_timeout_s: Annotated[float, Meta(ge=0)] = 60.0
    # A lost job goes back to its queue while it was lost fewer times than this.
    scheduler_max_attempts: Annotated[int, Meta(ge=1, le=1000)] = 3
    scheduler_ops_host: str = "0.0.0.0"
    scheduler_ops_port: Annotated[int, Meta(ge=0, le=65535)] = 9102

    def __post_init__(self) -> None:
        super().__post_init__()
        self.weights()  # a bad value fails at start
        if self.scheduler_lend_below_util >= self.scheduler_owners_busy_util:
            # else a GPU lends, its next window says its owners are busy, the borrower is
            # stopped, requeued and lent the same GPU again, for ever
            raise ConfigError(
                "GPUFLEET_SCHEDULER_LEND_BELOW_UTIL must be below "
                f"GPUFLEET_SCHEDULER_OWNERS_BUSY_UTIL ({self.scheduler_lend_below_util:g} >= "
                f"{self.scheduler_owners_busy_util:g})")

    def weights(self) -> dict[str, float]:
        """``{tenant: fair-share weight}``."""
        return tenant_values(self.scheduler_weights, "scheduler_weights")


def transactional_id(settings: SchedulerSettings) -> str:
    """One per cluster: a second scheduler with the same id fences the first."""
    default = f"{settings.topic_prefix}-scheduler-{settings.cluster}"
    return settings.scheduler_transactional_id or default


def group_id(settings: SchedulerSettings) -> str:
    """Where the scheduler's input offsets are committed (inside its transactions)."""
    return settings.scheduler_group_id or f"{settings.topic_prefix}-scheduler-{settings.cluster}"


def parse_list(text: str) -> list[str]:
    """``"a, b,"`` -> ``["a", "b"]``."""
    return [p.strip() for p in text.split(",") if p.strip()]
