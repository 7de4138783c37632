"""How the scheduler finds and reads its topics: waiting for them to exist, and reading a
range of them back in full for recovery (or failing loudly, never with part of the state)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Mapping

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from gpufleet.bus import make_consumer, missing_topics, partitions, topic
from services.scheduler.config import SchedulerSettings

log = logging.getLogger(__name__)
PROGRESS_EVERY_S = 5.0


class RecoveryIncomplete(RuntimeError):
    """The committed state could not be read to its end in time."""


def make_reader(settings: SchedulerSettings, group_id: str | None) -> AIOKafkaConsumer:
    """The shared consumer (committed records only, manual commits), assigned by hand."""
    return make_consumer(settings, (), group_id, client_id="gpufleet-scheduler")


async def wait_for_topics(settings: SchedulerSettings, names: Iterable[str],
                          stop: asyncio.Event) -> bool:
    """Wait until every topic of ``names`` has partitions; False if ``stop`` came first."""
    names = list(names)
    tries = 0
    while not stop.is_set():
        absent = missing_topics(settings, names, await partitions(settings, names))
        if not absent:
            return True
        if tries % 10 == 0:
            log.warning("waiting for topics to be created (retrying every second): %s",
                        ", ".join(topic(settings, n) for n in absent))
        tries += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=1.0)
    return False


def unread(ends: Mapping[TopicPartition, int],
           positions: Mapping[TopicPartition, int]) -> dict[TopicPartition, int]:
    """The partitions not yet read up to their end offset, with the end of each."""
    return {tp: end for tp, end in ends.items() if positions.get(tp, 0) < end}


async def read_range(settings: SchedulerSettings,
                     ends: dict[TopicPartition, int]) -> list[ConsumerRecord]:
    """Every committed record of the partitions from the beginning up to ``ends``.

    Raises ``RecoveryIncomplete`` if some partition has not reached its end offset within
    ``scheduler_recovery_timeout_s``: the state must never be rebuilt from part of them.
    """
    todo = unread(ends, {})
    if not todo:
        return []
    reader = make_reader(settings, None)
    await reader.start()
    out: list[ConsumerRecord] = []
    clock = asyncio.get_running_loop().time
    deadline = clock() + settings.scheduler_recovery_timeout_s
    report = clock() + PROGRESS_EVERY_S
    try:
        reader.assign(list(todo))
        await reader.seek_to_beginning(*todo)
        while todo:
            behind = ", ".join(f"{tp.topic}[{tp.partition}] < {end}"
                               for tp, end in sorted(todo.items()))
            if clock() >= report:
                report = clock() + PROGRESS_EVERY_S
                log.info("recovery: %d records read; not at their end offset yet: %s",
                         len(out), behind)
            if clock() >= deadline:
                raise RecoveryIncomplete(
                    f"recovery read {len(out)} records, but after "
                    f"{settings.scheduler_recovery_timeout_s:g} s these partitions are still "
                    f"short of their end offset: {behind} (is the broker reachable? the limit is "
                    "GPUFLEET_SCHEDULER_RECOVERY_TIMEOUT_S)")
            batch = await reader.getmany(timeout_ms=500, max_records=5000)
            for tp, records in batch.items():
                out += [r for r in records if r.offset < todo.get(tp, 0)]
            todo = unread(todo, {tp: await reader.position(tp) for tp in todo})
    finally:
        await reader.stop()
    return out
