from __future__ import annotations

import pytest
from analytics_builders import T0, analytics, inventory, placement, window

from gpufleet.contracts import (
    Alert,
    DrainCause,
    GpuDrain,
    GpuHealth,
    GpuUndrain,
    JobState,
    Message,
    NodeInventory,
)
from services.ingest.analytics.core import Analytics

BAD = {
    "xid": (GpuHealth.DEGRADED, "XID 79"),
    "remap": (GpuHealth.DEGRADED, "row remapping failed"),
    "ecc": (GpuHealth.DEGRADED, "uncorrectable ECC errors"),
    "lost": (GpuHealth.LOST, "GPU is lost (NVML_ERROR_GPU_IS_LOST)"),
    "other": (GpuHealth.DEGRADED, "nvml error"),
}


def drains(msgs: list[Message]) -> list[tuple[str, int]]:
    return [("drain" if isinstance(m, GpuDrain) else "undrain", m.gpu)
            for m in msgs if isinstance(m, GpuDrain | GpuUndrain)]


@pytest.mark.parametrize(
    ("bad", "cause"),
    [("xid", DrainCause.XID), ("remap", DrainCause.ROW_REMAP), ("ecc", DrainCause.ECC),
     ("lost", DrainCause.LOST), ("other", DrainCause.DEGRADED)],
)
def test_unhealthy_gpu_is_drained_with_its_cause(bad: str, cause: DrainCause) -> None:
    a = analytics()
    a.on_inventory(inventory(0))
    out = a.on_inventory(inventory(1, {1: BAD[bad]}))
    [d] = [m for m in out if isinstance(m, GpuDrain)]
    assert (d.node, d.gpu, d.cause, d.since) == ("n1", 1, cause, T0 + 60)
    assert BAD[bad][1] in d.reason
    assert any(isinstance(m, Alert) and m.severity == "critical" for m in out)


# (minute, unhealthy GPUs) per inventory; undrain after 15 min healthy
Step = tuple[float, set[int]]


@pytest.mark.parametrize(
    ("name", "steps", "expected"),
    [
        ("healthy never drains", [(0, set()), (10, set())], []),
        ("drained once while unhealthy", [(0, {0}), (5, {0}), (10, {0})], [(0, "drain", 0)]),
        ("returns after 15 healthy minutes",
         [(0, {0}), (10, set()), (20, set()), (25, set())], [(0, "drain", 0), (25, "undrain", 0)]),
        ("unhealthy again restarts the healthy streak",
         [(0, {0}), (10, set()), (20, {0}), (30, set()), (40, set()), (45, set())],
         [(0, "drain", 0), (45, "undrain", 0)]),
        ("two GPUs, each its own", [(0, {0}), (1, {1}), (16, set()), (31, set())],
         [(0, "drain", 0), (1, "drain", 1), (16, "undrain", 0), (31, "undrain", 1)]),
    ],
)
def test_drain_state_machine(name: str, steps: list[Step],
                             expected: list[tuple[float, str, int]]) -> None:
    a = analytics()
    got = []
    for minute, bad in steps:
        inv = inventory(minute, {g: BAD["xid"] for g in bad})
        got += [(minute, k, g) for k, g in drains(a.on_inventory(inv))]
    assert got == expected


def test_gpu_missing_from_the_inventory_is_lost_and_its_jobs_named() -> None:
    a = analytics()
    a.on_inventory(inventory(0, gpus=2))
    a.on_placement(placement("j1", gpus=[1]))
    a.on_placement(placement("j2", gpus=[0]))
    out = a.on_inventory(inventory(1, gpus=1))
    [d] = [m for m in out if isinstance(m, GpuDrain)]
    assert (d.gpu, d.cause, d.jobs) == (1, DrainCause.LOST, ["j1"])


def test_ended_jobs_are_not_named_in_a_drain() -> None:
    from analytics_builders import event
    a = analytics()
    a.on_placement(placement("j1", gpus=[0]))
    a.on_job_event(event("j1", JobState.SUCCEEDED, 1))
    a.on_placement(placement("j2", gpus=[0]))
    [d] = [m for m in a.on_inventory(inventory(2, {0: BAD["xid"]})) if isinstance(m, GpuDrain)]
    assert d.jobs == ["j2"]


def test_windows_of_the_gpu_return_it_when_inventories_stay_quiet() -> None:
    a = analytics()
    a.on_inventory(inventory(0, {0: BAD["xid"]}))
    a.on_inventory(inventory(1))  # healthy from minute 1; no later inventory
    got = [(m, k) for m in range(2, 20) for k, _ in drains(a.on_window(window(m, 50, job=None)))]
    assert got == [(15, "undrain")]  # the window of minute 15 ends at 16 = 1 + 15


def test_offline_node_is_not_drained() -> None:
    a = analytics()
    a.on_inventory(inventory(0))
    inv = inventory(1, gpus=0)
    off = NodeInventory(cluster=inv.cluster, node=inv.node, gpus=[], online=False, ts=inv.ts)
    assert drains(a.on_inventory(off)) == []


def test_replayed_inventory_makes_the_same_drain() -> None:
    def run() -> list[Message]:
        a: Analytics = analytics()
        a.on_inventory(inventory(0))
        return a.on_inventory(inventory(1, {0: BAD["xid"]}))
    assert [m.event_id for m in run()] == [m.event_id for m in run()]
