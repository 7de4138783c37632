"""Every topic and every message of gpufleet, in one place.

Messages are JSON on the wire so that any Kafka client can publish them. Each one carries
``schema`` (its version), ``event_id`` (for de-duplication) and ``ts`` (Unix seconds, UTC).
Evolution rule: a new field gets a default; an existing field never changes type. Fields that
a source cannot provide are ``None`` and are left out of the JSON (absent, never zero).

Several kinds on one topic form a tagged union (``kind`` is the tag), decoded by one typed
decoder per topic: see ``decoder_for``.
"""

from __future__ import annotations

import functools
import time
import uuid
from enum import StrEnum
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct, field

SCHEMA_VERSION = 1

# Bounded value types, checked when a message is decoded.
Percent = Annotated[float, Meta(ge=0, le=100)]
NonNegInt = Annotated[int, Meta(ge=0)]
Milli = Annotated[int, Meta(ge=1, le=1000)]
Name = Annotated[str, Meta(min_length=1, max_length=253)]


def schema_version() -> int:
    return SCHEMA_VERSION


def new_event_id() -> str:
    return uuid.uuid4().hex


def now() -> float:
    return time.time()


class Message(Struct, kw_only=True, omit_defaults=True, forbid_unknown_fields=False):
    """Fields that every message has."""

    schema: int = field(default_factory=schema_version)  # a factory, so it is always encoded
    event_id: str = field(default_factory=new_event_id)
    ts: float = field(default_factory=now)


# --------------------------------------------------------------------------------------------
# Telemetry: gpufleet.gpu.samples (keyed by node), gpufleet.nodes (compacted, keyed by node)
# --------------------------------------------------------------------------------------------


class GpuProcess(Struct, omit_defaults=True):
    pid: int
    used_memory_bytes: int | None = None


class GpuSample(Struct, kw_only=True, omit_defaults=True):
    """One GPU at one tick. Units are NVML's own: bytes, milliwatts, millijoules, MHz."""

    index: NonNegInt
    uuid: str
    util_gpu: Percent | None = None
    util_mem: Percent | None = None
    mem_used_bytes: NonNegInt | None = None
    mem_free_bytes: NonNegInt | None = None
    mem_reserved_bytes: NonNegInt | None = None
    power_mw: NonNegInt | None = None
    energy_mj: NonNegInt | None = None
    temp_c: int | None = None
    mem_temp_c: int | None = None
    sm_clock_mhz: NonNegInt | None = None
    mem_clock_mhz: NonNegInt | None = None
    throttle_reasons: NonNegInt | None = None
    sm_active: Percent | None = None
    tensor_active: Percent | None = None
    processes: list[GpuProcess] | None = None
    ecc_volatile_corrected: NonNegInt | None = None
    ecc_volatile_uncorrected: NonNegInt | None = None
    remapped_rows_pending: bool | None = None
    remapped_rows_failure: bool | None = None
    xid_errors: list[int] | None = None


class NodeSample(Message, kw_only=True):
    """One message per node per tick, holding all of the node's GPUs."""

    cluster: Name
    node: Name
    gpus: list[GpuSample]
    seq: NonNegInt = 0
    dropped: NonNegInt = 0  # samples the publisher dropped since the last delivered one


class GpuHealth(StrEnum):
    OK = "ok"
    DEGRADED = "degraded"
    LOST = "lost"


class GpuInfo(Struct, kw_only=True, omit_defaults=True):
    index: NonNegInt
    uuid: str
    model: str
    memory_total_bytes: NonNegInt
    pci_bus_id: str | None = None
    mig_mode: bool | None = None
    nvlink_domain: int | None = None  # GPUs of one node that share an NVLink/NVSwitch domain
    health: GpuHealth = GpuHealth.OK
    health_reason: str | None = None


class NodeInventory(Message, kw_only=True):
    """What a node has. Compacted topic: the latest message per node is its state."""

    cluster: Name
    node: Name
    gpus: list[GpuInfo]
    cpu_milli: NonNegInt = 0
    memory_mib: NonNegInt = 0
    driver_version: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    online: bool = True


# --------------------------------------------------------------------------------------------
# Jobs: gpufleet.jobs.requests, gpufleet.jobs.placements, gpufleet.jobs.events (keyed by job)
# --------------------------------------------------------------------------------------------


class JobSpec(Struct, kw_only=True, omit_defaults=True):
    """What a job asks for.

    ``gpus`` whole GPUs, or (with ``gpus=1``) ``gpu_milli`` thousandths of one GPU so that
    fractional jobs can share a GPU. ``gang`` members are placed all together or not at all,
    each member taking ``gpus`` GPUs.
    """

    job_id: Name
    tenant: Name = "default"
    queue: Name = "default"
    priority: int = 0
    gpus: int = 1
    gpu_milli: int = 1000
    gpu_models: list[str] = field(default_factory=list)
    cpu_milli: NonNegInt = 0
    memory_mib: NonNegInt = 0
    gang: int = 1
    est_runtime_s: float | None = None
    command: list[str] | None = None
    env: dict[str, str] = field(default_factory=dict)
    sim_duration_s: float | None = None  # simulated nodes run the job for this long
    sim_util: Percent | None = None  # and keep its GPUs this busy


class SubmitJob(Message, tag="submit", tag_field="kind", kw_only=True):
    job: JobSpec


class CancelJob(Message, tag="cancel", tag_field="kind", kw_only=True):
    job_id: Name
    reason: str = "cancelled by user"


JobRequest = SubmitJob | CancelJob


class Placement(Message, tag="place", tag_field="kind", kw_only=True):
    """Run ``member`` of a job on ``node`` using GPU ``gpus`` (indices on that node)."""

    job: JobSpec
    node: Name
    gpus: list[NonNegInt]
    gpu_milli: Milli = 1000
    member: NonNegInt = 0
    attempt: NonNegInt = 0


class StopJob(Message, tag="stop", tag_field="kind", kw_only=True):
    """Stop a running job on ``node`` (a cancel or a preemption)."""

    job_id: Name
    node: Name
    reason: Literal["cancelled", "preempted", "lost"] = "cancelled"
    grace_s: float = 10.0


PlacementCommand = Placement | StopJob


class JobState(StrEnum):
    SUBMITTED = "submitted"
    QUEUED = "queued"
    PLACED = "placed"
    STARTED = "started"
    HEARTBEAT = "heartbeat"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    PREEMPTING = "preempting"
    PREEMPTED = "preempted"
    CANCELLED = "cancelled"
    REJECTED = "rejected"
    LOST = "lost"  # its node stopped reporting for longer than the lease; its GPUs are freed


# How the scheduler's rejection of a second submit with a known job id starts. It speaks of the
# refused request, not of the job that holds the id: readers of jobs.events skip it for that job.
DUPLICATE_JOB_ID = "duplicate job id"

TERMINAL_STATES = frozenset(
    {JobState.SUCCEEDED, JobState.FAILED, JobState.PREEMPTED, JobState.CANCELLED,
     JobState.REJECTED, JobState.LOST}
)


class JobEvent(Message, kw_only=True):
    """Something that happened to a job. Other systems (a Slurm prolog, a Kubernetes
    controller) publish these too, for jobs that gpufleet did not place."""

    job_id: Name
    state: JobState
    tenant: str | None = None
    node: str | None = None
    gpus: list[NonNegInt] | None = None
    gpu_milli: int | None = None
    member: NonNegInt | None = None
    exit_code: int | None = None
    reason: str | None = None
    source: str = "gpufleet"
    attempt: NonNegInt = 0


# --------------------------------------------------------------------------------------------
# Derived: gpufleet.gpu.util (keyed by node), gpufleet.alerts (keyed by alert id),
# gpufleet.scheduler.state (compacted), gpufleet.dlq
# --------------------------------------------------------------------------------------------


class GpuUtilWindow(Message, kw_only=True):
    """Aggregates of one GPU over one window (per-minute by default)."""

    cluster: Name
    node: Name
    gpu: NonNegInt
    uuid: str = ""
    window_start: float
    window_s: int = 60
    samples: NonNegInt
    util_mean: Percent
    util_min: Percent
    util_max: Percent
    util_p95: Percent
    mem_used_bytes_mean: float = 0.0
    power_mw_mean: float = 0.0
    energy_mj: NonNegInt = 0
    job_id: str | None = None
    tenant: str | None = None


class AlertState(StrEnum):
    FIRING = "firing"
    RESOLVED = "resolved"


class Alert(Message, kw_only=True):
    alert_id: Name  # stable for one condition, so firing and resolved pair up
    kind: Name  # idle_gpu, gpu_lost, xid, ...
    state: AlertState
    severity: Literal["info", "warning", "critical"] = "warning"
    cluster: str | None = None
    node: str | None = None
    gpu: int | None = None
    job_id: str | None = None
    tenant: str | None = None
    message: str = ""
    since: float | None = None


class NodeState(Struct, kw_only=True, omit_defaults=True):
    node: str
    gpus: int
    model: str
    free_milli: list[int]  # free share of each GPU, in thousandths
    healthy: list[bool]
    online: bool = True  # False: offline by its inventory, or silent past its lease


class JobSummary(Struct, kw_only=True, omit_defaults=True):
    job_id: str
    tenant: str
    state: JobState
    gpus: int
    gpu_milli: int
    priority: int = 0
    queue: str = "default"
    node: str | None = None
    gpu_indices: list[int] | None = None
    reason: str | None = None
    since: float | None = None


class SchedulerState(Message, kw_only=True):
    """The scheduler's periodic snapshot of the cluster, for the API (compacted topic)."""

    cluster: Name
    nodes: list[NodeState]
    queued: list[JobSummary]
    running: list[JobSummary]
    decisions_per_s: float = 0.0


class JobSlot(Struct, kw_only=True, omit_defaults=True):
    """One member of a running job: its node, GPUs and share of each."""

    node: Name
    gpus: list[NonNegInt]
    gpu_milli: Milli = 1000


class SchedulerJob(Message, kw_only=True):
    """The scheduler's own record of one job (compacted, keyed by job id), written in the
    transaction that changed it: what a restarted scheduler recovers from, whatever the
    retention of the other topics. A job holds GPUs while ``slots`` is not empty."""

    job: JobSpec
    state: JobState
    seq: NonNegInt = 0  # arrival order
    attempt: NonNegInt = 0
    losses: NonNegInt = 0
    reason: str = ""
    since: float = 0.0
    slots: list[JobSlot] = field(default_factory=list)
    placed_at: float = 0.0
    started: list[NonNegInt] = field(default_factory=list)  # members reported running
    stopping: bool = False
    cancelling: bool = False
    borrowed: bool = False


class DeadLetter(Message, kw_only=True):
    """A message that could not be used, with the original bytes and why."""

    topic: str
    partition: int
    offset: int
    key: bytes | None = None
    value: bytes | None = None
    reason: str
    consumer: str = ""


# --------------------------------------------------------------------------------------------
# Topics
# --------------------------------------------------------------------------------------------


class TopicSpec(Struct, frozen=True, kw_only=True):
    name: str  # the name under the prefix, e.g. "gpu.samples"
    types: tuple[Any, ...]  # the message type (or the union members) carried
    key: Literal["node", "job", "alert", "cluster", "none"]
    partitions: int = 6
    compacted: bool = False
    retention_ms: int | None = None
    doc: str = ""


TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec(name="gpu.samples", types=(NodeSample,), key="node", partitions=12,
              retention_ms=24 * 3600 * 1000, doc="one message per node per tick, all its GPUs"),
    TopicSpec(name="nodes", types=(NodeInventory,), key="node", partitions=3, compacted=True,
              doc="node inventory; latest per node is its state"),
    TopicSpec(name="jobs.requests", types=(SubmitJob, CancelJob), key="job", partitions=6,
              doc="job submit and cancel requests"),
    TopicSpec(name="jobs.placements", types=(Placement, StopJob), key="job", partitions=6,
              doc="scheduler decisions for executors: place, stop"),
    TopicSpec(name="jobs.events", types=(JobEvent,), key="job", partitions=6,
              doc="job lifecycle, from the scheduler, executors and other systems"),
    TopicSpec(name="gpu.util", types=(GpuUtilWindow,), key="node", partitions=6,
              doc="per-GPU windowed utilization from ingest"),
    TopicSpec(name="alerts", types=(Alert,), key="alert", partitions=3,
              doc="idle-GPU and health alerts, firing and resolved"),
    TopicSpec(name="scheduler.state", types=(SchedulerState,), key="cluster", partitions=1,
              compacted=True, doc="the scheduler's cluster snapshot"),
    TopicSpec(name="scheduler.jobs", types=(SchedulerJob,), key="job", partitions=6,
              compacted=True, doc="the scheduler's record of each job, for its recovery"),
    TopicSpec(name="dlq", types=(DeadLetter,), key="none", partitions=3,
              retention_ms=7 * 24 * 3600 * 1000, doc="messages that did not decode, and why"),
)

TOPIC_BY_NAME: dict[str, TopicSpec] = {t.name: t for t in TOPICS}
TOPIC_OF_TYPE: dict[type, TopicSpec] = {ty: t for t in TOPICS for ty in t.types}


def key_of(msg: Message) -> bytes | None:
    """The partition key of a message, as its topic's contract says: node, job, alert or cluster."""
    spec = TOPIC_OF_TYPE.get(type(msg))
    kind = spec.key if spec is not None else "none"
    if kind == "job":
        job = getattr(msg, "job", None)
        value = job.job_id if job is not None else getattr(msg, "job_id", None)
    elif kind == "alert":
        value = getattr(msg, "alert_id", None)
    elif kind in ("node", "cluster"):
        value = getattr(msg, kind, None)
    else:
        value = None
    return value.encode() if isinstance(value, str) else None


def topic_name(name: str, prefix: str = "gpufleet") -> str:
    """The full Kafka topic name: ``<prefix>.<name>``."""
    if name not in TOPIC_BY_NAME:
        raise KeyError(f"unknown topic {name!r}; known: {', '.join(TOPIC_BY_NAME)}")
    return f"{prefix}.{name}" if prefix else name


def message_type(spec: TopicSpec) -> Any:
    """The type a topic's decoder decodes: the struct, or the union of its members."""
    if len(spec.types) == 1:
        return spec.types[0]
    union: Any = spec.types[0]
    for t in spec.types[1:]:
        union = union | t
    return union


@functools.cache
def decoder_for(name: str) -> msgspec.json.Decoder[Any]:
    """One typed JSON decoder per topic, built once."""
    return msgspec.json.Decoder(message_type(TOPIC_BY_NAME[name]))


encoder = msgspec.json.Encoder()


def encode(msg: Message) -> bytes:
    return encoder.encode(msg)
