"""The plugin registry: a plain mapping from a plugin's name to its factory."""

from __future__ import annotations

from services.scheduler.framework import Factory
from services.scheduler.plugins import (
    backfill,
    balance,
    bestfit,
    fairshare,
    fgd,
    fits,
    gang,
    gpumodel,
    health,
    packing,
    preemption,
    priority,
    quota,
    random,
    spread,
    topology,
)

REGISTRY: dict[str, Factory] = {
    m.NAME: m.factory
    for m in (priority, fairshare, quota, health, gpumodel, fits, gang, backfill, bestfit,
              packing, spread, topology, fgd, balance, random, preemption)
}
REGISTRY[fgd.PAPER] = fgd.paper_factory

from services.scheduler.plugins import (  # noqa: E402  (the closed loop)
    drained,
    loadaware,
    opportunistic,
    reclaim,
)

REGISTRY |= {m.NAME: m.factory for m in (loadaware, drained, reclaim, opportunistic)}
