"""Topic creation: one idempotent function, ``gpufleet topics create``."""

from __future__ import annotations

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
            response = await admin.create_topics([new])
            if _created(response.topic_errors):
                created.append(new.name)
        return created
    finally:
        await admin.close()


def _created(topic_errors: list[tuple[object, ...]]) -> bool:
    """Whether the broker created the topic; raise on any error but "already exists".

    The admin client reports each topic's outcome in the response rather than raising, and
    the topic list read just before can be stale, so "already exists" is expected here.
    """
    for name, code, *message in topic_errors:
        if code == 0:
            continue
        error = for_code(int(code))  # type: ignore[call-overload]
        if error is TopicAlreadyExistsError:
            return False
        raise error(f"creating topic {name}: {message[0] if message else ''}")
    return True
