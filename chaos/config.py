"""Sizes and durations of one run of the fault suite; ``small`` runs in ``make test``."""

from __future__ import annotations

from dataclasses import dataclass, replace

# Every fault, in the order they are injected. The cluster fault runs on a stack of its own.
SINGLE_BROKER_FAULTS: tuple[str, ...] = (
    "kill-warehouse", "kill-ingest", "kill-scheduler", "kill-fleet", "kill-api",
    "broker-sigterm", "broker-sigkill", "warehouse-down", "fleet-down", "second-scheduler",
    "poison",  # last: a service that a poison record crashes keeps crashing on it
)
CLUSTER_FAULTS: tuple[str, ...] = ("cluster-broker-kill",)
ALL_FAULTS = SINGLE_BROKER_FAULTS + CLUSTER_FAULTS


@dataclass(frozen=True)
class ChaosConfig:
    nodes: int = 4  # simulated GPU nodes
    gpus_per_node: int = 8
    jobs_per_s: float = 2.0  # job submissions through the api
    job_s: tuple[float, float] = (2.0, 8.0)  # how long a simulated job runs
    probe_nodes: int = 2  # nodes whose samples the suite publishes itself, one GPU each
    probe_per_s: float = 10.0  # probe samples per second, all probe nodes together
    warmup_s: float = 10.0  # steady load before the first fault
    observe_s: float = 15.0  # load after each fault's recovery, before the next fault
    broker_down_s: float = 10.0  # how long the broker stays away
    warehouse_down_s: float = 60.0
    lease_s: float = 30.0  # the scheduler's node lease (GPUFLEET_SCHEDULER_NODE_LEASE_S)
    cycle_s: float = 2.0  # one scheduler cycle, the slack on the lease
    poison_s: float = 15.0
    poison_per_s: float = 20.0
    second_scheduler_s: float = 20.0
    cluster_down_s: float = 20.0
    ready_within_s: float = 60.0  # every service ready again this soon after its fault
    idle_after_s: float = 20.0  # a live service that shows no progress this long is idle
    settle_s: float = 60.0  # at the end: how long to wait for the last jobs and samples
    faults: tuple[str, ...] = ALL_FAULTS
    seed: int = 1

    def fleet_down_s(self) -> float:
        """Longer than the lease plus one cycle, so the scheduler must give the nodes up."""
        return self.lease_s + self.cycle_s + max(5.0, self.lease_s / 2)


PROFILES: dict[str, ChaosConfig] = {
    "long": ChaosConfig(),
    # One pass, small sizes, short holds: about two minutes, in `make test`.
    "small": ChaosConfig(
        nodes=2, jobs_per_s=1.0, job_s=(1.0, 3.0), probe_per_s=5.0, warmup_s=4.0,
        observe_s=4.0, broker_down_s=3.0, warehouse_down_s=6.0, lease_s=6.0, cycle_s=2.0,
        poison_s=3.0, poison_per_s=20.0, second_scheduler_s=5.0, cluster_down_s=6.0,
        idle_after_s=20.0, settle_s=40.0,
    ),
}


def profile(name: str, **changes: object) -> ChaosConfig:
    return replace(PROFILES[name], **changes)  # type: ignore[arg-type]
