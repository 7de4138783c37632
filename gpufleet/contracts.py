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
    restartable: bool | None = None  # may be stopped and requeued; None: its queue decides


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


# --------------------------------------------------------------------------------------------
# The closed loop: gpufleet.reclaims (keyed by job), gpufleet.gpu.drains (keyed by node),
# gpufleet.jobs.rightsizing (compacted, keyed by job). Written by ingest's analytics app.
# --------------------------------------------------------------------------------------------

GpuIndex = Annotated[int, Meta(ge=0, le=1023)]
Timestamp = Annotated[float, Meta(ge=0)]
Reason = Annotated[str, Meta(max_length=500)]
ShortText = Annotated[str, Meta(max_length=253)]
GpuCount = Annotated[int, Meta(ge=0, le=65_536)]
Bytes = Annotated[int, Meta(ge=0, le=1 << 50)]  # a petabyte: no GPU has more memory


class GpuRef(Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One GPU of one node (in one cluster)."""

    node: Name
    gpu: GpuIndex


class ReclaimWarning(Message, tag="warn", tag_field="kind", kw_only=True):
    """A job's GPUs have been idle under its policy for the timeout: they will be reclaimed at
    ``reclaim_at`` unless they become busy before."""

    job_id: Name
    tenant: Name | None = None
    queue: Name | None = None
    policy: Name
    gpus: Annotated[list[GpuRef], Meta(max_length=4096)] = field(default_factory=list)
    idle_since: Timestamp
    reclaim_at: Timestamp
    util_mean: Percent  # mean utilization of the job's GPUs over the idle streak
    threshold: Percent
    reason: Reason = ""


class ReclaimWithdrawn(Message, tag="withdraw", tag_field="kind", kw_only=True):
    """The job's GPUs became busy (or the job ended) within the grace: no reclaim."""

    job_id: Name
    policy: Name
    idle_since: Timestamp
    reason: Reason = ""


class ReclaimRequest(Message, tag="reclaim", tag_field="kind", kw_only=True):
    """Reclaim a job's GPUs: stop it, then requeue it (``action="requeue"``) or not."""

    job_id: Name
    tenant: Name | None = None
    queue: Name | None = None
    policy: Name
    gpus: Annotated[list[GpuRef], Meta(max_length=4096)] = field(default_factory=list)
    action: Literal["requeue", "stop"]
    idle_since: Timestamp
    util_mean: Percent
    threshold: Percent
    reason: Reason


ReclaimMessage = ReclaimWarning | ReclaimWithdrawn | ReclaimRequest


class DrainCause(StrEnum):
    XID = "xid"
    ECC = "ecc"
    ROW_REMAP = "row_remap"
    LOST = "lost"
    DEGRADED = "degraded"  # unhealthy for another reason the node gave


class GpuDrain(Message, tag="drain", tag_field="kind", kw_only=True):
    """No new placements on this GPU; the jobs named are stopped and requeued."""

    cluster: Name
    node: Name
    gpu: GpuIndex
    uuid: ShortText = ""
    cause: DrainCause
    reason: Reason
    jobs: Annotated[list[Name], Meta(max_length=1000)] = field(default_factory=list)
    since: Timestamp


class GpuUndrain(Message, tag="undrain", tag_field="kind", kw_only=True):
    """The GPU has been healthy for the set time: placements may use it again."""

    cluster: Name
    node: Name
    gpu: GpuIndex
    uuid: ShortText = ""
    reason: Reason
    drained_since: Timestamp
    healthy_since: Timestamp


DrainMessage = GpuDrain | GpuUndrain


class RightSizingReport(Message, kw_only=True):
    """What a job asked for against what it used; the latest per job is its state."""

    job_id: Name
    tenant: Name | None = None
    queue: Name | None = None
    final: bool = False  # the job has ended; no later report follows
    gpus_requested: GpuCount
    gpu_milli: Milli = 1000
    gpus_seen: GpuCount = 0  # GPUs that reported windows for the job
    gpus_busy: GpuCount = 0  # of those, GPUs whose mean utilization was at or over the threshold
    windows: NonNegInt = 0
    gpu_minutes: Annotated[float, Meta(ge=0)] = 0.0
    busy_gpu_minutes: Annotated[float, Meta(ge=0)] = 0.0
    util_mean: Percent = 0.0
    util_p95: Percent = 0.0
    util_max: Percent = 0.0
    mem_peak_bytes: Bytes = 0
    recommended_gpus: GpuCount = 0
    recommendation: Reason = ""


LOOP_TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec(name="reclaims", types=(ReclaimWarning, ReclaimWithdrawn, ReclaimRequest),
              key="job", partitions=3, doc="idle-job warnings, withdrawals and reclaim requests"),
    TopicSpec(name="gpu.drains", types=(GpuDrain, GpuUndrain), key="node", partitions=3,
              doc="GPUs drained for health, and returned after being healthy"),
    TopicSpec(name="jobs.rightsizing", types=(RightSizingReport,), key="job", partitions=3,
              compacted=True, doc="requested against used per job; latest per job"),
)
TOPICS = (*TOPICS, *LOOP_TOPICS)
TOPIC_BY_NAME.update({t.name: t for t in LOOP_TOPICS})
TOPIC_OF_TYPE.update({ty: t for t in LOOP_TOPICS for ty in t.types})
