"""Poison messages: values a consumer or a warehouse column cannot hold never decode; a newer
schema version is a dead letter; a message its consumer fails on is filed, and the consumer
goes on. (The dead-letter topic itself is exercised against the broker in
tests/integration/test_dead_letters.py.)"""

from __future__ import annotations

import logging
from typing import Any

import msgspec
import msgspec.inspect as mi
import pytest
from aiokafka.structs import ConsumerRecord
from contract_strategies import numbers_and_sizes

from gpufleet.bus import DeadLetters
from gpufleet.config import BusSettings
from gpufleet.contracts import (
    SCHEMA_VERSION,
    TOPICS,
    JobEvent,
    JobState,
    decoder_for,
    envelope_version,
    message_type,
    version_problem,
)

BUS = BusSettings()


def record(topic: str, value: bytes | None, offset: int = 7) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(topic=f"gpufleet.{topic}", partition=1, offset=offset, timestamp=0,
                          timestamp_type=0, key=b"k", value=value, checksum=None,
                          serialized_key_size=1, serialized_value_size=len(value or b""),
                          headers=())


def submit(**job: Any) -> bytes:
    return msgspec.json.encode({"kind": "submit", "job": {"job_id": "j", **job}})


def node(index: int, model: str = "H100") -> bytes:
    return msgspec.json.encode({"cluster": "c", "node": "n", "gpus": [
        {"index": index, "uuid": "GPU-0", "model": model, "memory_total_bytes": 1}]})


def event(**fields: Any) -> bytes:
    return msgspec.json.encode({"job_id": "j", "state": "failed", **fields})


def sample(**gpu: Any) -> bytes:
    return msgspec.json.encode({"cluster": "c", "node": "n",
                                "gpus": [{"index": 0, "uuid": "GPU-0", **gpu}]})


# Each of these was taken by the contracts once, and then crashed a consumer or the warehouse.
POISON = [
    ("gpus >= 2**63 (the scheduler's gang check overflowed)",
     "jobs.requests", submit(gpus=2**63), "$.job.gpus"),
    ("a GPU index >= 1023 in the inventory (the scheduler's cycle raised)",
     "nodes", node(1023), "$.gpus[0].index"),
    ("exit_code = 2**70 (the warehouse's Int32 column)",
     "jobs.events", event(exit_code=2**70), "$.exit_code"),
    ("gpus = [10**9] in a job event (the UInt16 column)",
     "jobs.events", event(node="n", gpus=[10**9]), "$.gpus[0]"),
    ("a sample of GPU index 10**9 (the UInt16 column)",
     "gpu.samples", sample(index=10**9), "$.gpus[0].index"),
    ("a negative est_runtime_s", "jobs.requests", submit(est_runtime_s=-1.0),
     "$.job.est_runtime_s"),
    ("sim_duration_s = 1e308", "jobs.requests", submit(sim_duration_s=1e308),
     "$.job.sim_duration_s"),
    ("a 100 KB model name (every api event carried it)",
     "nodes", node(0, model="m" * 100_000), "$.gpus[0].model"),
    ("a 100 KB GPU model asked for", "jobs.requests", submit(gpu_models=["m" * 100_000]),
     "$.job.gpu_models[0]"),
    ("an env value of 1 MB", "jobs.requests", submit(env={"A": "v" * (1 << 20)}), "$.job.env"),
    ("ten thousand env variables", "jobs.requests",
     submit(env={f"V{i}": "1" for i in range(10_000)}), "$.job.env"),
    ("a command of 100,000 words", "jobs.requests", submit(command=["x"] * 100_000),
     "$.job.command"),
    ("a timestamp past the DateTime64 columns", "jobs.events", event(ts=1e12), "$.ts"),
    ("a placement's attempt past the UInt16 column", "jobs.placements",
     msgspec.json.encode({"kind": "place", "job": {"job_id": "j"}, "node": "n", "gpus": [0],
                          "attempt": 70_000}), "$.attempt"),
    ("a node with 2**40 CPU milli (the UInt32 column)", "nodes",
     msgspec.json.encode({"cluster": "c", "node": "n", "gpus": [], "cpu_milli": 2**40}),
     "$.cpu_milli"),
    ("a scheduler state whose lists do not match its GPU count", "scheduler.state",
     msgspec.json.encode({"cluster": "c", "queued": [], "running": [], "nodes": [
         {"node": "n", "gpus": 8, "model": "H100", "free_milli": [1000], "healthy": []}]}),
     "$.nodes[0]"),
]


@pytest.mark.parametrize(("why", "topic", "raw", "where"), POISON, ids=[p[0] for p in POISON])
def test_poison_messages_do_not_decode(why: str, topic: str, raw: bytes, where: str) -> None:
    with pytest.raises(msgspec.ValidationError) as e:
        decoder_for(topic).decode(raw)
    assert f"at `{where}" in str(e.value), why
    msg, reason = DeadLetters(None, BUS, "test").decode(record(topic, raw))
    assert msg is None
    assert reason is not None and reason.startswith(f"does not decode as {topic}")


@pytest.mark.parametrize("spec", TOPICS, ids=[t.name for t in TOPICS])
def test_every_number_is_bounded_and_every_string_and_list_sized(spec: Any) -> None:
    assert numbers_and_sizes(mi.type_info(message_type(spec))) == []


def test_the_bounds_hold_on_both_sides() -> None:
    ok = decoder_for("jobs.events").decode(event(exit_code=-(2**31), node="n", gpus=[63]))
    assert (ok.exit_code, ok.gpus) == (-(2**31), [63])
    with pytest.raises(msgspec.ValidationError, match="exit_code"):
        decoder_for("jobs.events").decode(event(exit_code=2**31))
    with pytest.raises(msgspec.ValidationError, match=r"\$\.gpus\[0\]"):
        decoder_for("jobs.events").decode(event(node="n", gpus=[64]))


def test_a_long_reason_is_clipped_where_it_is_made() -> None:
    ev = JobEvent(job_id="j", state=JobState.FAILED, reason="GPU 0 is not usable: " + "x" * 9000)
    assert ev.reason is not None and len(ev.reason) == 4096 and ev.reason.endswith("\u2026")
    assert decoder_for("jobs.events").decode(msgspec.json.encode(ev)) == ev


@pytest.mark.parametrize(("raw", "version"), [
    (event(schema=SCHEMA_VERSION + 1), SCHEMA_VERSION + 1),
    # a newer version that changed a field's type still says which version it is
    (event(schema=7, state={"name": "failed"}), 7),
    (event(schema=2**70), 2**70),
])
def test_a_newer_schema_version_is_a_dead_letter(raw: bytes, version: int) -> None:
    assert envelope_version(raw) == version
    msg, reason = DeadLetters(None, BUS, "test").decode(record("jobs.events", raw))
    assert msg is None
    assert reason == (f"schema version {version} is newer than this gpufleet understands "
                      f"({SCHEMA_VERSION}): upgrade the consumer to read it")


def test_the_current_and_older_versions_are_read() -> None:
    for version in (0, SCHEMA_VERSION):
        assert version_problem(version) is None
        msg, reason = DeadLetters(None, BUS, "t").decode(record("jobs.events",
                                                               event(schema=version)))
        assert reason is None and msg.schema == version


async def test_a_message_its_consumer_fails_on_is_filed_and_the_consumer_goes_on(
        caplog: pytest.LogCaptureFixture) -> None:
    letters = DeadLetters(None, BUS, "scheduler")
    seen: list[str] = []

    def handle(msg: JobEvent) -> list[str]:
        if msg.job_id == "bad":
            raise ValueError("cannot place GPU 1023")
        seen.append(msg.job_id)
        return [msg.job_id]

    records = [record("jobs.events", msgspec.json.encode({"job_id": j, "state": "failed"}), i)
               for i, j in enumerate(["a", "bad", "b"])]
    with caplog.at_level(logging.WARNING):
        results = [await letters.handle(r, handle) for r in records]
    assert results == [["a"], None, ["b"]]
    assert seen == ["a", "b"]
    assert letters.count == 1
    assert ("dead letter from gpufleet.jobs.events[1]@1: scheduler failed on this message: "
            "ValueError: cannot place GPU 1023") in caplog.text


async def test_an_async_handler_that_fails_is_filed_too() -> None:
    letters = DeadLetters(None, BUS, "executor")

    async def dispatch(msg: Any) -> None:
        raise ValueError("invalid literal for int() with base 10: 'boom'")

    rec = record("jobs.events", event())
    msg = await letters.decode_or_dead_letter(rec)
    assert await letters.guard_async(rec, dispatch, msg) is None
    assert letters.count == 1
