"""What the broker's answer to a topic creation means (it reports errors in the response)."""

from __future__ import annotations

import pytest
from aiokafka.errors import InvalidPartitionsError

from gpufleet.topics import _created


@pytest.mark.parametrize(
    ("topic_errors", "expected"),
    [
        ([("t", 0, None)], True),
        ([("t", 0)], True),  # version 0 of the response carries no message
        ([("t", 36, "Topic 't' already exists.")], False),  # a stale topic list: not created
    ],
)
def test_created_reads_the_answer(topic_errors: list[tuple[object, ...]], expected: bool) -> None:
    assert _created(topic_errors) is expected


def test_other_errors_are_raised_with_the_topic_named() -> None:
    with pytest.raises(InvalidPartitionsError, match="creating topic t: bad count"):
        _created([("t", 37, "bad count")])
