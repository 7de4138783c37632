from __future__ import annotations

import gc
import os
import random
import uuid
from typing import Any

import msgspec
import pytest
from contracts_loop_samples import LOOP_SAMPLES

from gpufleet.contracts import (
    GPU_MILLI,
    TOPICS,
    Alert,
    AlertState,
    CancelJob,
    DeadLetter,
    GpuInfo,
    GpuSample,
    GpuUtilWindow,
    JobEvent,
    JobSlot,
    JobSpec,
    JobState,
    NodeInventory,
    NodeSample,
    Placement,
    SchedulerJob,
    SchedulerState,
    StopJob,
    SubmitJob,
    decoder_for,
    encode,
    invalid_field,
    key_of,
    new_event_id,
    share_problem,
    topic_name,
)

SAMPLES: list[tuple[str, Any]] = [
    ("gpu.samples", NodeSample(cluster="c", node="n1", gpus=[
        GpuSample(index=0, uuid="GPU-0", util_gpu=55.0, mem_used_bytes=1 << 30, power_mw=250_000),
        GpuSample(index=1, uuid="GPU-1"),
    ])),
    ("nodes", NodeInventory(cluster="c", node="n1", gpus=[
        GpuInfo(index=0, uuid="GPU-0", model="H100", memory_total_bytes=80 << 30)])),
    ("jobs.requests", SubmitJob(job=JobSpec(job_id="j1", gpus=2, gpu_models=["H100"]))),
    ("jobs.requests", CancelJob(job_id="j1")),
    ("jobs.placements", Placement(job=JobSpec(job_id="j1"), node="n1", gpus=[0, 1])),
    ("jobs.placements", StopJob(job_id="j1", node="n1", reason="preempted")),
    ("jobs.events", JobEvent(job_id="j1", state=JobState.FAILED, exit_code=3)),
    ("gpu.util", GpuUtilWindow(cluster="c", node="n1", gpu=0, window_start=60.0, samples=60,
                               util_mean=50, util_min=0, util_max=100, util_p95=99)),
    ("alerts", Alert(alert_id="idle:n1:0", kind="idle_gpu", state=AlertState.FIRING)),
    ("scheduler.state", SchedulerState(cluster="c", nodes=[], queued=[], running=[])),
    ("scheduler.jobs", SchedulerJob(job=JobSpec(job_id="j1", gpus=2), state=JobState.PLACED,
                                    slots=[JobSlot(node="n1", gpus=[0, 1])], started=[0])),
    *LOOP_SAMPLES,
    ("dlq", DeadLetter(topic="x", partition=0, offset=1, value=b"\xff\x00", reason="bad")),
]


@pytest.mark.parametrize(("topic", "msg"), SAMPLES, ids=[type(m).__name__ for _, m in SAMPLES])
def test_every_message_round_trips_through_its_topic_decoder(topic: str, msg: Any) -> None:
    assert decoder_for(topic).decode(encode(msg)) == msg


def test_every_topic_has_a_sample_above() -> None:
    assert {t.name for t in TOPICS} == {topic for topic, _ in SAMPLES}


def test_every_message_has_version_event_id_and_timestamp() -> None:
    for _, msg in SAMPLES:
        wire = msgspec.json.decode(encode(msg))
        assert wire["schema"] == 1
        assert len(wire["event_id"]) == 32
        assert wire["ts"] > 1.7e9


def test_event_ids_are_random_version_4_uuids() -> None:
    ids = {new_event_id() for _ in range(1000)}
    assert len(ids) == 1000
    for text in list(ids)[:50]:
        u = uuid.UUID(hex=text)
        assert (u.hex, u.version, u.variant) == (text, 4, uuid.RFC_4122)


def test_event_ids_do_not_repeat_across_forks_or_seeds() -> None:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child's generator is seeded anew, so its next id is not the parent's
        os.write(write, new_event_id().encode())
        os._exit(0)
    os.waitpid(pid, 0)
    assert os.read(read, 32).decode() != new_event_id()
    random.seed(1)  # seeding the random module does not touch the ids' generator
    first = new_event_id()
    random.seed(1)
    assert new_event_id() != first


def test_contract_values_are_not_tracked_by_the_cyclic_collector() -> None:
    spec = JobSpec(job_id="a", gpus=1)
    for value in (spec, SubmitJob(job=spec), GpuSample(index=0, uuid="GPU-0", util_gpu=1.0),
                  JobEvent(job_id="a", state=JobState.QUEUED)):
        assert not gc.is_tracked(value), type(value).__name__


def test_unsupported_fields_are_absent_not_zero() -> None:
    wire = msgspec.json.decode(encode(GpuSample(index=1, uuid="GPU-1", util_gpu=0.0)))
    assert wire == {"index": 1, "uuid": "GPU-1", "util_gpu": 0.0}


def test_union_topics_dispatch_on_kind() -> None:
    dec = decoder_for("jobs.requests")
    assert isinstance(dec.decode(b'{"kind":"cancel","job_id":"a"}'), CancelJob)
    submit = dec.decode(b'{"kind":"submit","job":{"job_id":"a","gpus":4}}')
    assert isinstance(submit, SubmitJob)
    assert submit.job.gpus == 4


@pytest.mark.parametrize(
    ("topic", "raw", "complaint"),
    [
        ("gpu.samples",
         b'{"cluster":"c","node":"n","gpus":[{"index":0,"uuid":"u","util_gpu":101}]}', "<= 100"),
        ("gpu.samples", b'{"cluster":"c","node":"n","gpus":[{"index":0,"uuid":"u",'
         b'"mem_used_bytes":-1}]}', ">= 0"),
        ("gpu.samples", b'{"cluster":"c","node":"","gpus":[]}', "length >= 1"),
        ("jobs.requests", b'{"kind":"explode","job_id":"a"}', "Invalid value 'explode'"),
        ("jobs.events", b'{"job_id":"a","state":"dancing"}', "Invalid enum value 'dancing'"),
        ("jobs.events", b"not json", "malformed"),
    ],
)
def test_impossible_values_do_not_decode(topic: str, raw: bytes, complaint: str) -> None:
    with pytest.raises(msgspec.DecodeError, match=complaint):
        decoder_for(topic).decode(raw)


@pytest.mark.parametrize(
    ("name", "prefix", "full"),
    [("gpu.samples", "gpufleet", "gpufleet.gpu.samples"), ("dlq", "prod", "prod.dlq"),
     ("nodes", "", "nodes")],
)
def test_topic_names_take_the_prefix(name: str, prefix: str, full: str) -> None:
    assert topic_name(name, prefix) == full


def test_unknown_topic_is_a_clear_error() -> None:
    with pytest.raises(KeyError, match=r"unknown topic 'gpu\.sample'"):
        topic_name("gpu.sample")


@pytest.mark.parametrize(
    ("msg", "key"),
    [
        (SAMPLES[0][1], b"n1"),  # node sample: by node
        (SAMPLES[2][1], b"j1"),  # submit: by job
        (SAMPLES[4][1], b"j1"),  # placement: by job
        (Alert(alert_id="idle:n1:0", kind="idle_gpu", state=AlertState.FIRING, node="n1"),
         b"idle:n1:0"),  # alert: by alert id even when it names a node
        (SchedulerState(cluster="east", nodes=[], queued=[], running=[]), b"east"),
        (SAMPLES[-1][1], b"x/0@1 "),  # dead letter: its record's coordinates and consumer
        (DeadLetter(topic="gpufleet.nodes", partition=2, offset=7, reason="r", consumer="api"),
         b"gpufleet.nodes/2@7 api"),
    ],
)
def test_messages_are_keyed_as_their_topic_says(msg: Any, key: bytes | None) -> None:
    assert key_of(msg) == key


@pytest.mark.parametrize(("error", "what", "field"), [
    ("Expected `int`, got `str` - at `$.gpus`", "Expected `int`, got `str`", "gpus"),
    ("Expected `int` >= 0 - at `$.job.gpu_models[...]`", "Expected `int` >= 0",
     "job.gpu_models"),
    ("Object missing required field `job_id`", "Object missing required field `job_id`",
     "job_id"),
    ("Object contains unknown field `gpu`", "Object contains unknown field `gpu`", "gpu"),
    ("Input data was truncated", "Input data was truncated", None),
])
def test_a_validation_message_names_its_field(error: str, what: str, field: str | None) -> None:
    assert invalid_field(error) == (what, field)


@pytest.mark.parametrize(("gpus", "milli", "problem"), [
    (1, GPU_MILLI, None),
    (8, GPU_MILLI, None),
    (1, 250, None),
    (2, 500, "a fractional share (gpu_milli < 1000) is for a single GPU; set gpus=1"),
    (1, 0, "asks for gpu_milli=0; a GPU share is 1..1000 thousandths"),
    (1, 2500, "asks for gpu_milli=2500, more than one GPU; ask for gpus=3 whole GPUs instead"),
])
def test_the_gpu_share_rule(gpus: int, milli: int, problem: str | None) -> None:
    assert share_problem(gpus, milli) == problem
