"""The plugin list a scheduler runs, from its settings (the same in the service and the sim)."""

from __future__ import annotations

from collections.abc import Iterable

from services.scheduler.config import SchedulerSettings, parse_list
from services.scheduler.framework import PluginArgs
from services.scheduler.jobs import Job
from services.scheduler.pipeline import Profile
from services.scheduler.plugins import REGISTRY


def plugin_names(settings: SchedulerSettings) -> list[str]:
    """Queue order, filters, gang (always: all or none), scores, then post-filters."""
    names = [*parse_list(settings.scheduler_queue_order),
             *parse_list(settings.scheduler_filters), "gang"]
    names += parse_list(settings.scheduler_scores)
    names += parse_list(settings.scheduler_loop)
    if settings.scheduler_preemption:
        names.append("preemption")
    if settings.scheduler_backfill:
        names.append("backfill")
    return names


def build_profile(settings: SchedulerSettings,
                  workload: Iterable[tuple[Job, float]] = ()) -> Profile:
    args = PluginArgs(quotas=settings.quotas(), borrowing=settings.scheduler_quota_borrowing,
                      weights=settings.weights(), workload=tuple(workload),
                      opportunistic_queues=frozenset(
                          parse_list(settings.scheduler_opportunistic_queues)),
                      lend_below_util=settings.scheduler_lend_below_util,
                      owners_busy_util=settings.scheduler_owners_busy_util)
    return Profile.build(REGISTRY, plugin_names(settings), args)
