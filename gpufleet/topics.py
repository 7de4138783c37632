"""Topic creation: one idempotent function, ``gpufleet topics create``."""

from __future__ import annotations

from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError, for_code

from gpufleet.config import BusSettings
from gpufleet.contracts import TOPICS, TopicSpec, topic_name


def topic_configs(spec: TopicSpec) -> dict[str, str]:
    configs: dict[str, str] = {}
    if spec.compacted:
        configs["cleanup.policy"] = "compact"
        configs["min.cleanable.dirty.ratio"] = "0.1"
    if spec.retention_ms is not None:
        configs["retention.ms"] = str(spec.retention_ms)
        if spec.compacted:  # the latest record per key, for as long as the retention says
            configs["cleanup.policy"] = "compact,delete"
    return configs


def raise_topic_errors(topic_errors: list[tuple[Any, ...]]) -> None:
    """Raise the error a broker answered for a topic (the client returns them, never raises).

    Each entry is ``(topic, error_code, ...)``; code 0 is success."""
    for entry in topic_errors:
        name, code = entry[0], entry[1]
        if code:
            error = for_code(code)
            message = entry[2] if len(entry) > 2 and entry[2] else error.description
            raise error(f"{name}: {message}")


async def create_topics(
    settings: BusSettings, replication_factor: int | None = None, partitions: int | None = None
) -> list[str]:
    """Create every topic that does not exist yet; return the names created.

    ``replication_factor`` defaults to ``settings.topic_replication_factor``. ``partitions``
    overrides each topic's own count (tests use 1 to keep the broker light).
    """
    replicas = replication_factor or settings.topic_replication_factor
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap, client_id="gpufleet-admin"
    )
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [
            NewTopic(
                name=topic_name(spec.name, settings.topic_prefix),
                num_partitions=partitions or spec.partitions,
                replication_factor=replicas,
                topic_configs=topic_configs(spec),
            )
            for spec in TOPICS
            if topic_name(spec.name, settings.topic_prefix) not in existing
        ]
        if not wanted:
            return []
        created: list[str] = []
        for new in wanted:  # one by one, so one that a peer created meanwhile is no failure
            try:
                response = await admin.create_topics([new])
                raise_topic_errors(response.topic_errors)
                created.append(new.name)
            except TopicAlreadyExistsError:
                pass  # a peer created it, or the topic list we read was behind
        return created
    finally:
        await admin.close()

