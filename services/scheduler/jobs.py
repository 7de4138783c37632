"""The scheduler's view of a job: a ``JobSpec`` checked and reduced to what placement needs."""

from __future__ import annotations

from dataclasses import dataclass, field

from gpufleet.contracts import GPU_MILLI, JobSpec, share_problem

FULL = GPU_MILLI  # one whole GPU, in thousandths
TIMES = "\u00d7"  # the multiplication sign, as in "8 times H100"


@dataclass(frozen=True, slots=True)
class Job:
    """One job: ``gang`` members, each taking ``gpus`` GPUs of ``milli`` thousandths each."""

    job_id: str
    tenant: str = "default"
    queue: str = "default"
    priority: int = 0
    gpus: int = 1
    milli: int = FULL
    models: tuple[str, ...] = ()
    cpu_milli: int = 0
    memory_mib: int = 0
    gang: int = 1
    est_runtime_s: float | None = None
    submitted_at: float = 0.0
    seq: int = 0  # arrival order, for stable ordering
    spec: JobSpec | None = field(default=None, compare=False, repr=False)
    # What placement depends on: jobs of one shape fit or fail alike (set from the fields).
    shape: tuple[int, int, tuple[str, ...], int, int, int] = field(
        init=False, compare=False, repr=False)
    # Jobs that fail alike in one cycle: the shape, the priority class, the tenant (its quota).
    alike: tuple[object, ...] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        shape = (self.gpus, self.milli, self.models, self.cpu_milli, self.memory_mib, self.gang)
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "alike", (shape, self.priority, self.tenant))

    @property
    def demand_milli(self) -> int:
        """GPU share of the whole job, in thousandths of a GPU."""
        return self.gang * self.gpus * self.milli

    def describe(self) -> str:
        """``"8xH100"`` (with a multiplication sign), ``"0.5 of one GPU"``, ``"2 members of
        4xGPU"``."""
        model = "|".join(self.models) or "GPU"
        one = f"{self.milli / FULL:g} of one {model}" if self.milli < FULL else (
            f"{self.gpus}{TIMES}{model}")
        return one if self.gang == 1 else f"{self.gang} members of {one}"


def from_spec(spec: JobSpec, now: float, seq: int) -> Job:
    """The job a spec asks for (validate it first with ``problems``)."""
    fractional = spec.gpus == 1 and spec.gpu_milli < FULL
    return Job(
        job_id=spec.job_id,
        tenant=spec.tenant,
        queue=spec.queue,
        priority=spec.priority,
        gpus=spec.gpus,
        milli=spec.gpu_milli if fractional else FULL,
        models=tuple(sorted(spec.gpu_models)),
        cpu_milli=spec.cpu_milli,
        memory_mib=spec.memory_mib,
        gang=spec.gang,
        est_runtime_s=spec.est_runtime_s,
        submitted_at=now,
        seq=seq,
        spec=spec,
    )


def problems(spec: JobSpec, known_models: set[str], largest_gang: int,
             largest_node: int) -> str | None:
    """Why a request cannot ever be placed, in words a person can act on; None if it can."""
    if spec.gpus <= 0:
        return f"asks for {spec.gpus} GPUs; a job needs at least 1 GPU"
    share = share_problem(spec.gpus, spec.gpu_milli)
    if share is not None:
        return share
    if spec.gang <= 0:
        return f"asks for a gang of {spec.gang}; a gang is at least 1 member"
    unknown = sorted(set(spec.gpu_models) - known_models)
    if unknown and known_models:
        return (f"unknown GPU model {', '.join(unknown)}; "
                f"this cluster has {', '.join(sorted(known_models))}")
    if spec.gpus > largest_node:
        return (f"asks for {spec.gpus} GPUs per member on one node; the largest node has "
                f"{largest_node}; split it into a gang of smaller members")
    if spec.gang > largest_gang:
        return (f"a gang of {spec.gang} members of {spec.gpus} GPU(s) is larger than the "
                f"cluster: at most {largest_gang} such members fit on all nodes together")
    return None
