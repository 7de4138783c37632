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
import os
import random
import time
from enum import StrEnum
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct, field

SCHEMA_VERSION = 1  # the major version: a consumer refuses messages of a newer one

# Limits of the domain, and of the warehouse columns the values land in (see
# services/warehouse/migrations): every numeric field is bounded, every string and list has a
# maximum size, so that a message that decodes is one every service can handle and store.
MAX_GPUS_PER_NODE = 64  # GPU indices are 0..63 (nodes, placements, samples, windows)
MAX_GPUS_PER_JOB = 1024  # GPUs of one member (the scheduler rejects more than a node has)
MAX_GANG = 1024  # members of one gang
MAX_NODES = 100_000  # nodes in one scheduler snapshot
MAX_JOBS = 1_000_000  # queued or running jobs in one scheduler snapshot
MAX_SECONDS = 10 * 366 * 24 * 3600  # ten years: durations, runtimes, grace periods
TEXT_MAX = 4096  # characters of a reason or a message
MAX_RECORD_BYTES = 64 << 20  # the bytes of a dead letter's original record
LATEST_TS = 4_102_444_800.0  # 2100-01-01 UTC: within DateTime (UInt32) and DateTime64(3)
INT32_MAX = 2**31 - 1
UINT16_MAX = 2**16 - 1
UINT32_MAX = 2**32 - 1
INT64_MAX = 2**63 - 1  # counters and bytes (UInt64 columns), and numpy's int64 in the scheduler
GPU_MILLI = 1000  # one whole GPU, in the unit of a GPU share (gpu_milli: thousandths of a GPU)

# Bounded value types, checked when a message is decoded.
Percent = Annotated[float, Meta(ge=0, le=100)]
NonNegInt = Annotated[int, Meta(ge=0, le=INT64_MAX)]
Counter = NonNegInt  # a monotonic NVML counter or a byte count (UInt64 columns)
UInt16 = Annotated[int, Meta(ge=0, le=UINT16_MAX)]
UInt32 = Annotated[int, Meta(ge=0, le=UINT32_MAX)]
Int32 = Annotated[int, Meta(ge=-(2**31), le=INT32_MAX)]
GpuIndex = Annotated[int, Meta(ge=0, lt=MAX_GPUS_PER_NODE)]
GpuIndices = Annotated[list[GpuIndex], Meta(max_length=MAX_GPUS_PER_NODE)]
Milli = Annotated[int, Meta(ge=1, le=GPU_MILLI)]
Attempt = UInt16  # attempts of one job (UInt16 columns)
Member = Annotated[int, Meta(ge=0, lt=MAX_GANG)]
Seconds = Annotated[float, Meta(ge=0, le=MAX_SECONDS)]
Timestamp = Annotated[float, Meta(ge=0, le=LATEST_TS)]  # Unix seconds, UTC
Name = Annotated[str, Meta(min_length=1, max_length=253)]
ShortText = Annotated[str, Meta(max_length=253)]  # an optional name, a source, a model, a uuid
Text = Annotated[str, Meta(max_length=TEXT_MAX)]  # a reason, a message
MemoryMib = Annotated[int, Meta(ge=0, le=2**40)]  # an exbibyte: room to add many in int64
CpuMilli = Annotated[int, Meta(ge=0, le=INT32_MAX)]
Labels = Annotated[dict[Name, Text], Meta(max_length=256)]
Env = Annotated[dict[Annotated[str, Meta(min_length=1, max_length=256)], Text],
                Meta(max_length=256)]
Command = Annotated[list[Text], Meta(max_length=256)]
Priority = Annotated[int, Meta(ge=-1_000_000, le=1_000_000)]
Celsius = Annotated[int, Meta(ge=-273, le=1000)]
EventId = Annotated[str, Meta(max_length=128)]


def schema_version() -> int:
    return SCHEMA_VERSION


class _Envelope(Struct):
    schema: int = SCHEMA_VERSION


def envelope_version(raw: bytes) -> int | None:
    """The ``schema`` version a JSON message says it has, whatever else it holds; None when
    it says nothing readable."""
    try:
        return msgspec.json.decode(raw, type=_Envelope).schema
    except msgspec.DecodeError:
        return None


def version_problem(version: int | None) -> str | None:
    """Why a message of this schema version cannot be used here, or None when it can."""
    if version is not None and version > SCHEMA_VERSION:
        return (f"schema version {version} is newer than this gpufleet understands "
                f"({SCHEMA_VERSION}): upgrade the consumer to read it")
    return None


def clip(text: str, limit: int = TEXT_MAX) -> str:
    """``text`` cut to ``limit`` characters (ending in an ellipsis when cut)."""
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


# Event ids need to be unique, not secret: 122 random bits from a generator seeded from the
# OS, seeded anew in every forked child (a system call per id costs more than the rest of an
# event). A private generator, so code that seeds ``random`` cannot repeat ids.
_IDS = random.Random()
os.register_at_fork(after_in_child=_IDS.seed)
_V4_CLEAR = ~(0xF000 << 64 | 0xC000 << 48)
_V4_SET = 0x4000 << 64 | 0x8000 << 48  # version 4, RFC 4122 variant


def new_event_id() -> str:
    """A random version-4 UUID as 32 hex digits (``uuid.uuid4().hex`` without building a UUID
    object: a scheduler makes one per event, thousands a second)."""
    return f"{_IDS.getrandbits(128) & _V4_CLEAR | _V4_SET:032x}"


def now() -> float:
    return time.time()


# Contract structs are plain values (numbers, text, lists of them, other contract structs):
# they can hold no reference cycle, so the cyclic garbage collector does not track them
# (msgspec's ``gc=False``). A scheduler keeps thousands alive, and each full collection
# would walk them all.
class Message(Struct, gc=False, kw_only=True, omit_defaults=True, forbid_unknown_fields=False):
    """Fields that every message has."""

    schema: Annotated[int, Meta(ge=0, le=INT32_MAX)] = field(default_factory=schema_version)
    event_id: EventId = field(default_factory=new_event_id)
    ts: Timestamp = field(default_factory=now)  # factories, so that they are always encoded


# --------------------------------------------------------------------------------------------
# Telemetry: gpufleet.gpu.samples (keyed by node), gpufleet.nodes (compacted, keyed by node)
# --------------------------------------------------------------------------------------------


class GpuProcess(Struct, gc=False, omit_defaults=True):
    pid: Annotated[int, Meta(ge=0, le=INT32_MAX)]
    used_memory_bytes: Counter | None = None


class GpuSample(Struct, gc=False, kw_only=True, omit_defaults=True):
    """One GPU at one tick. Units are NVML's own: bytes, milliwatts, millijoules, MHz."""

    index: GpuIndex
    uuid: ShortText
    util_gpu: Percent | None = None
    util_mem: Percent | None = None
    mem_used_bytes: Counter | None = None
    mem_free_bytes: Counter | None = None
    mem_reserved_bytes: Counter | None = None
    power_mw: UInt32 | None = None
    energy_mj: Counter | None = None
    temp_c: Celsius | None = None
    mem_temp_c: Celsius | None = None
    sm_clock_mhz: UInt16 | None = None
    mem_clock_mhz: UInt16 | None = None
    throttle_reasons: Counter | None = None
    sm_active: Percent | None = None
    tensor_active: Percent | None = None
    processes: Annotated[list[GpuProcess], Meta(max_length=1024)] | None = None
    ecc_volatile_corrected: Counter | None = None
    ecc_volatile_uncorrected: Counter | None = None
    remapped_rows_pending: bool | None = None
    remapped_rows_failure: bool | None = None
    xid_errors: Annotated[list[UInt32], Meta(max_length=256)] | None = None


class NodeSample(Message, kw_only=True):
    """One message per node per tick, holding all of the node's GPUs."""

    cluster: Name
    node: Name
    gpus: Annotated[list[GpuSample], Meta(max_length=MAX_GPUS_PER_NODE)]
    seq: NonNegInt = 0
    dropped: NonNegInt = 0  # samples the publisher dropped since the last delivered one


class GpuHealth(StrEnum):
    OK = "ok"
    DEGRADED = "degraded"
    LOST = "lost"


class GpuInfo(Struct, gc=False, kw_only=True, omit_defaults=True):
    index: GpuIndex
    uuid: ShortText
    model: ShortText
    memory_total_bytes: Counter
    pci_bus_id: ShortText | None = None
    mig_mode: bool | None = None
    nvlink_domain: Int32 | None = None  # GPUs of one node that share an NVLink/NVSwitch domain
    health: GpuHealth = GpuHealth.OK
    health_reason: Text | None = None


class NodeInventory(Message, kw_only=True):
    """What a node has. Compacted topic: the latest message per node is its state."""

    cluster: Name
    node: Name
    gpus: Annotated[list[GpuInfo], Meta(max_length=MAX_GPUS_PER_NODE)]
    cpu_milli: CpuMilli = 0
    memory_mib: MemoryMib = 0
    driver_version: ShortText | None = None
    labels: Labels = field(default_factory=dict)
    online: bool = True


# --------------------------------------------------------------------------------------------
# Jobs: gpufleet.jobs.requests, gpufleet.jobs.placements, gpufleet.jobs.events (keyed by job)
# --------------------------------------------------------------------------------------------


class JobSpec(Struct, gc=False, kw_only=True, omit_defaults=True):
    """What a job asks for.

    ``gpus`` whole GPUs, or (with ``gpus=1``) ``gpu_milli`` thousandths of one GPU so that
    fractional jobs can share a GPU. ``gang`` members are placed all together or not at all,
    each member taking ``gpus`` GPUs.
    """

    job_id: Name
    tenant: Name = "default"
    queue: Name = "default"
    priority: Priority = 0
    gpus: Annotated[int, Meta(ge=0, le=MAX_GPUS_PER_JOB)] = 1  # 0: rejected, with a reason
    # 0 or more than one GPU: rejected with a reason (share_problem)
    gpu_milli: Annotated[int, Meta(ge=0, le=GPU_MILLI * MAX_GPUS_PER_JOB)] = GPU_MILLI
    gpu_models: Annotated[list[Name], Meta(max_length=64)] = field(default_factory=list)
    cpu_milli: CpuMilli = 0
    memory_mib: MemoryMib = 0
    gang: Annotated[int, Meta(ge=0, le=MAX_GANG)] = 1
    est_runtime_s: Seconds | None = None
    command: Command | None = None
    env: Env = field(default_factory=dict)
    sim_duration_s: Seconds | None = None  # simulated nodes run the job for this long
    sim_util: Percent | None = None  # and keep its GPUs this busy
    restartable: bool | None = None  # may be stopped and requeued; None: its queue decides


def share_problem(gpus: int, gpu_milli: int) -> str | None:
    """What is wrong with a job's GPU share, in words a person can act on; None if nothing.

    A share is 1..``GPU_MILLI`` thousandths of a GPU; less than a whole GPU (a fraction) is for
    a single GPU. The api refuses such a request and the scheduler rejects it, by this rule.
    """
    if gpu_milli <= 0:
        return f"asks for gpu_milli={gpu_milli}; a GPU share is 1..{GPU_MILLI} thousandths"
    if gpu_milli > GPU_MILLI:
        return (f"asks for gpu_milli={gpu_milli}, more than one GPU; "
                f"ask for gpus={-(-gpu_milli // GPU_MILLI)} whole GPUs instead")
    if gpu_milli < GPU_MILLI and gpus > 1:
        return (f"a fractional share (gpu_milli < {GPU_MILLI}) is for a single GPU; "
                "set gpus=1")
    return None


class SubmitJob(Message, tag="submit", tag_field="kind", kw_only=True):
    job: JobSpec


class CancelJob(Message, tag="cancel", tag_field="kind", kw_only=True):
    job_id: Name
    reason: Text = "cancelled by user"


JobRequest = SubmitJob | CancelJob


class Placement(Message, tag="place", tag_field="kind", kw_only=True):
    """Run ``member`` of a job on ``node`` using GPU ``gpus`` (indices on that node)."""

    job: JobSpec
    node: Name
    gpus: GpuIndices
    gpu_milli: Milli = GPU_MILLI
    member: Member = 0
    attempt: Attempt = 0
    # An opportunistic job on share lent to it: the GPU is allocated to others and measured
    # idle; the executor does not count this share against the GPU's 1000 (the scheduler stops
    # the job when the owners get busy).
    lent: bool = False


class StopJob(Message, tag="stop", tag_field="kind", kw_only=True):
    """Stop a running job on ``node`` (a cancel, a preemption, or an attempt given up).

    ``attempt`` is the attempt to stop: a stop never touches a later attempt of the same job
    placed on the same node (its placement may be read first after a restart). Without it (an
    older sender), the stop is for whichever attempt runs there."""

    job_id: Name
    node: Name
    reason: Literal["cancelled", "preempted", "lost"] = "cancelled"
    grace_s: Seconds = 10.0
    attempt: Attempt | None = None


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
    tenant: ShortText | None = None
    node: ShortText | None = None
    gpus: GpuIndices | None = None
    gpu_milli: UInt16 | None = None  # ingest files values outside 1..1000 as dead letters
    member: Member | None = None
    exit_code: Int32 | None = None
    reason: Text | None = None
    source: ShortText = "gpufleet"
    attempt: Attempt = 0

    def __post_init__(self) -> None:
        # A reason made of other text (a GPU's health reason, model names) stays in bounds.
        if self.reason is not None and len(self.reason) > TEXT_MAX:
            self.reason = clip(self.reason)


# --------------------------------------------------------------------------------------------
# Derived: gpufleet.gpu.util (keyed by node), gpufleet.alerts (keyed by alert id),
# gpufleet.scheduler.state (compacted), gpufleet.dlq
# --------------------------------------------------------------------------------------------


class GpuUtilWindow(Message, kw_only=True):
    """Aggregates of one GPU over one window (per-minute by default)."""

    cluster: Name
    node: Name
    gpu: GpuIndex
    uuid: ShortText = ""
    window_start: Timestamp
    window_s: Annotated[int, Meta(ge=1, le=31 * 24 * 3600)] = 60
    samples: UInt32
    util_mean: Percent
    util_min: Percent
    util_max: Percent
    util_p95: Percent
    mem_used_bytes_mean: Annotated[float, Meta(ge=0, le=float(2**64))] = 0.0
    power_mw_mean: Annotated[float, Meta(ge=0, le=float(UINT32_MAX))] = 0.0
    energy_mj: Counter = 0
    job_id: ShortText | None = None
    tenant: ShortText | None = None


class AlertState(StrEnum):
    FIRING = "firing"
    RESOLVED = "resolved"


class Alert(Message, kw_only=True):
    alert_id: Name  # stable for one condition, so firing and resolved pair up
    kind: Name  # idle_gpu, gpu_lost, xid, ...
    state: AlertState
    severity: Literal["info", "warning", "critical"] = "warning"
    cluster: ShortText | None = None
    node: ShortText | None = None
    gpu: GpuIndex | None = None
    job_id: ShortText | None = None
    tenant: ShortText | None = None
    message: Text = ""
    since: Timestamp | None = None

    def __post_init__(self) -> None:
        if len(self.message) > TEXT_MAX:
            self.message = clip(self.message)


class NodeState(Struct, gc=False, kw_only=True, omit_defaults=True):
    node: ShortText
    gpus: Annotated[int, Meta(ge=0, le=MAX_GPUS_PER_NODE)]
    model: ShortText
    free_milli: Annotated[list[Annotated[int, Meta(ge=0, le=GPU_MILLI)]],
                          Meta(max_length=MAX_GPUS_PER_NODE)]  # free share of each GPU, in 1/1000
    healthy: Annotated[list[bool], Meta(max_length=MAX_GPUS_PER_NODE)]
    online: bool = True  # False: offline by its inventory, or silent past its lease

    def __post_init__(self) -> None:
        if not len(self.free_milli) == len(self.healthy) == self.gpus:
            raise ValueError(f"node {self.node}: free_milli and healthy need one entry per "
                             f"GPU ({self.gpus}), not {len(self.free_milli)} and "
                             f"{len(self.healthy)}")


class JobSummary(Struct, gc=False, kw_only=True, omit_defaults=True):
    job_id: ShortText
    tenant: ShortText
    state: JobState
    gpus: Annotated[int, Meta(ge=0, le=MAX_GPUS_PER_JOB * MAX_GANG)]  # of all its members
    gpu_milli: Annotated[int, Meta(ge=0, le=GPU_MILLI * MAX_GPUS_PER_JOB)]
    priority: Priority = 0
    queue: ShortText = "default"
    node: ShortText | None = None
    gpu_indices: GpuIndices | None = None
    reason: Text | None = None
    since: Timestamp | None = None


class SchedulerState(Message, kw_only=True):
    """The scheduler's periodic snapshot of the cluster, for the API (compacted topic)."""

    cluster: Name
    nodes: Annotated[list[NodeState], Meta(max_length=MAX_NODES)]
    queued: Annotated[list[JobSummary], Meta(max_length=MAX_JOBS)]
    running: Annotated[list[JobSummary], Meta(max_length=MAX_JOBS)]
    decisions_per_s: Annotated[float, Meta(ge=0, le=1e9)] = 0.0


class JobSlot(Struct, gc=False, kw_only=True, omit_defaults=True):
    """One member of a running job: its node, GPUs and share of each."""

    node: Name
    gpus: GpuIndices
    gpu_milli: Milli = GPU_MILLI
    lent: bool = False  # lent share (see ``Placement.lent``): the scheduler's model holds none


class SchedulerJob(Message, kw_only=True):
    """The scheduler's own record of one job (compacted, keyed by job id), written in the
    transaction that changed it: what a restarted scheduler recovers from, whatever the
    retention of the other topics. A job holds GPUs while ``slots`` is not empty."""

    job: JobSpec
    state: JobState
    seq: NonNegInt = 0  # arrival order
    attempt: Attempt = 0
    losses: Attempt = 0
    reason: Text = ""
    since: Timestamp = 0.0
    slots: Annotated[list[JobSlot], Meta(max_length=MAX_GANG)] = field(default_factory=list)
    placed_at: Timestamp = 0.0
    started: Annotated[list[Member], Meta(max_length=MAX_GANG)] = field(
        default_factory=list)  # members reported running
    ended: Annotated[list[Member], Meta(max_length=MAX_GANG)] = field(
        default_factory=list)  # members of a gang that ended; their GPUs are free
    stopping: bool = False
    cancelling: bool = False
    borrowed: bool = False


class DeadLetter(Message, kw_only=True):
    """A message that could not be used, with the original bytes and why."""

    topic: Annotated[str, Meta(max_length=249)]  # Kafka's own limit on a topic name
    partition: Annotated[int, Meta(ge=0, le=INT32_MAX)]
    offset: NonNegInt
    key: Annotated[bytes, Meta(max_length=MAX_RECORD_BYTES)] | None = None
    value: Annotated[bytes, Meta(max_length=MAX_RECORD_BYTES)] | None = None
    reason: Text
    consumer: ShortText = ""


# --------------------------------------------------------------------------------------------
# The closed loop: gpufleet.reclaims (keyed by job), gpufleet.gpu.drains (keyed by node),
# gpufleet.jobs.rightsizing (compacted, keyed by job). Written by ingest's analytics app.
# --------------------------------------------------------------------------------------------

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
    reason: Text = ""


class ReclaimWithdrawn(Message, tag="withdraw", tag_field="kind", kw_only=True):
    """The job's GPUs became busy (or the job ended) within the grace: no reclaim."""

    job_id: Name
    policy: Name
    idle_since: Timestamp
    reason: Text = ""


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
    reason: Text


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
    reason: Text
    jobs: Annotated[list[Name], Meta(max_length=1000)] = field(default_factory=list)
    since: Timestamp


class GpuUndrain(Message, tag="undrain", tag_field="kind", kw_only=True):
    """The GPU has been healthy for the set time: placements may use it again."""

    cluster: Name
    node: Name
    gpu: GpuIndex
    uuid: ShortText = ""
    reason: Text
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
    gpu_milli: Milli = GPU_MILLI
    gpus_seen: GpuCount = 0  # GPUs that reported windows for the job
    gpus_busy: GpuCount = 0  # of those, GPUs whose mean utilization was at or over the threshold
    windows: NonNegInt = 0
    gpu_minutes: Annotated[float, Meta(ge=0, le=1e15)] = 0.0
    busy_gpu_minutes: Annotated[float, Meta(ge=0, le=1e15)] = 0.0
    util_mean: Percent = 0.0
    util_p95: Percent = 0.0
    util_max: Percent = 0.0
    mem_peak_bytes: Bytes = 0
    recommended_gpus: GpuCount = 0
    recommendation: Text = ""


# --------------------------------------------------------------------------------------------
# Topics
# --------------------------------------------------------------------------------------------


class TopicSpec(Struct, frozen=True, kw_only=True):
    name: str  # the name under the prefix, e.g. "gpu.samples"
    types: tuple[Any, ...]  # the message type (or the union members) carried
    key: Literal["node", "job", "alert", "cluster", "record", "none"]
    partitions: int = 6
    compacted: bool = False
    retention_ms: int | None = None  # with compacted: compacted, and deleted after this
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
    TopicSpec(name="reclaims", types=(ReclaimWarning, ReclaimWithdrawn, ReclaimRequest),
              key="job", partitions=3, doc="idle-job warnings, withdrawals and reclaim requests"),
    TopicSpec(name="gpu.drains", types=(GpuDrain, GpuUndrain), key="node", partitions=3,
              doc="GPUs drained for health, and returned after being healthy"),
    TopicSpec(name="jobs.rightsizing", types=(RightSizingReport,), key="job", partitions=3,
              compacted=True, doc="requested against used per job; latest per job"),
    TopicSpec(name="dlq", types=(DeadLetter,), key="record", partitions=3, compacted=True,
              retention_ms=7 * 24 * 3600 * 1000,
              doc="messages that did not decode or could not be handled, and why; keyed by "
                  "the record's coordinates and the consumer, so a repeat has the same key"),
    TopicSpec(name="scheduler.jobs", types=(SchedulerJob,), key="job", partitions=6,
              compacted=True, doc="the scheduler's record of each job, for its recovery"),
)

TOPIC_BY_NAME: dict[str, TopicSpec] = {t.name: t for t in TOPICS}
TOPIC_OF_TYPE: dict[type, TopicSpec] = {ty: t for t in TOPICS for ty in t.types}


def key_of(msg: Message) -> bytes | None:
    """The partition key of a message, as its topic's contract says: node, job, alert,
    cluster, or a dead letter's source record."""
    spec = TOPIC_OF_TYPE.get(type(msg))
    kind = spec.key if spec is not None else "none"
    if kind == "job":
        job = getattr(msg, "job", None)
        value = job.job_id if job is not None else getattr(msg, "job_id", None)
    elif kind == "alert":
        value = getattr(msg, "alert_id", None)
    elif kind in ("node", "cluster"):
        value = getattr(msg, kind, None)
    elif isinstance(msg, DeadLetter):
        value = letter_key(msg)
    else:
        value = None
    return value.encode() if isinstance(value, str) else None


def invalid_field(error: str) -> tuple[str, str | None]:
    """A msgspec validation message split into what is wrong and the field it names (a dotted
    path, list positions left out), or None: ``"Expected `int`, got `str` - at `$.job.gpus`"``
    -> ``("Expected `int`, got `str`", "job.gpus")``; a missing or unknown field names itself.
    The api and the settings both say which field was wrong through this one reading."""
    what, at, where = error.partition(" - at `$.")
    if at:
        return what, where.rstrip("`").replace("[...]", "")
    for lead in ("missing required field `", "unknown field `"):
        if lead in error:
            return error, error.split(lead, 1)[1].split("`", 1)[0]
    return error, None


def letter_key(letter: DeadLetter) -> str:
    """A dead letter's key: the record's coordinates and the consumer that filed it, e.g.
    ``gpufleet.jobs.events/3@1042 ingest``. The same record filed again by the same consumer
    (after a restart, or by another instance of it) has the same key, so compaction and
    readers keep one letter per record and consumer."""
    return f"{letter.topic}/{letter.partition}@{letter.offset} {letter.consumer}"


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
