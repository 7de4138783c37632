"""Topic creation reads the broker's answer per topic: the client returns errors, never raises."""

from __future__ import annotations

from typing import Any

import pytest
from aiokafka.errors import (
    InvalidReplicationFactorError,
    KafkaError,
    RequestTimedOutError,
    TopicAlreadyExistsError,
)

from gpufleet.topics import raise_topic_errors


@pytest.mark.parametrize(("name", "answer", "raised"), [
    ("created", [("t", 0)], None),
    ("created (with an empty message)", [("t", 0, None)], None),
    ("already there", [("t", 36, "Topic 't' already exists.")], TopicAlreadyExistsError),
    ("the broker timed out", [("t", 7)], RequestTimedOutError),
    ("a bad replication factor", [("t", 38, "only 1 broker")], InvalidReplicationFactorError),
])
def test_the_broker_answer_per_topic(name: str, answer: list[tuple[Any, ...]],
                                     raised: type[KafkaError] | None) -> None:
    if raised is None:
        raise_topic_errors(answer)
        return
    with pytest.raises(raised, match="t"):
        raise_topic_errors(answer)
