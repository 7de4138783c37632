"""Reading traces in the Alibaba GPU 2023 CSV format (the default one ships in ``data/``)."""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import msgspec

from gpufleet.contracts import JobEvent, JobSpec, JobState, SubmitJob
from services.scheduler.cluster import Cluster, NodeSpec
from services.scheduler.core import SchedulerCore
from services.scheduler.jobs import FULL, Job
from services.scheduler.pipeline import Profile

DATA = Path(__file__).parent / "data" / "alibaba-gpu-2023"
DEFAULT_NODES = DATA / "openb_node_list_gpu_node.csv"
DEFAULT_TASKS = DATA / "openb_pod_list_default.csv"
PAPER_RESULTS = DATA / "fgd_expected_allocation_default.csv"


@dataclass(frozen=True)
class Task:
    name: str
    cpu_milli: int
    memory_mib: int
    num_gpu: int
    gpu_milli: int
    models: tuple[str, ...]
    created: float
    deleted: float | None
    runtime: float | None = None  # seconds; from the trace's creation and deletion times

    @property
    def demand_milli(self) -> int:
        """GPU share asked for, in thousandths (a multi-GPU task takes whole GPUs)."""
        return self.num_gpu * (self.gpu_milli if self.num_gpu == 1 else FULL)

    @property
    def runtime_s(self) -> float | None:
        if self.runtime is not None:
            return self.runtime
        return None if self.deleted is None else max(self.deleted - self.created, 1.0)

    def job(self, job_id: str, seq: int = 0) -> Job:
        milli = self.gpu_milli if self.num_gpu == 1 and 0 < self.gpu_milli < FULL else FULL
        return Job(job_id=job_id, gpus=self.num_gpu, milli=milli, models=self.models,
                   cpu_milli=self.cpu_milli, memory_mib=self.memory_mib, seq=seq,
                   est_runtime_s=self.runtime_s)

    def spec(self, job_id: str) -> JobSpec:
        milli = self.gpu_milli if self.num_gpu == 1 and 0 < self.gpu_milli < FULL else FULL
        return JobSpec(job_id=job_id, gpus=max(self.num_gpu, 1), gpu_milli=milli,
                       gpu_models=list(self.models), cpu_milli=self.cpu_milli,
                       memory_mib=self.memory_mib, est_runtime_s=self.runtime_s)


class TraceError(ValueError):
    """A trace file that cannot be read at all (missing, not CSV, a required column missing)."""


@dataclass(frozen=True)
class Rejected:
    """A trace row left out, and why (in the service's words where the service would say it)."""

    line: int  # line of the CSV file (the header is line 1)
    name: str
    reason: str


@dataclass(frozen=True)
class Trace:
    tasks: list[Task]
    rejected: list[Rejected]


TASK_COLUMNS = ("name", "cpu_milli", "memory_mib", "num_gpu", "gpu_milli")
NODE_COLUMNS = ("sn", "cpu_milli", "memory_mib", "gpu", "model")


def _int(text: str) -> int:
    return int(float(text)) if text else 0


def _rows(path: Path, required: tuple[str, ...]) -> list[dict[str, str]]:
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            missing = [c for c in required if c not in (reader.fieldnames or ())]
            if missing:
                raise TraceError(f"{path}: missing column(s) {', '.join(missing)}; the file "
                                 f"needs {', '.join(required)}")
            return list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise TraceError(f"{path}: cannot read it as CSV: {e}") from e


def load_nodes(path: Path = DEFAULT_NODES) -> list[NodeSpec]:
    out = []
    for line, r in enumerate(_rows(path, NODE_COLUMNS), start=2):
        try:
            out.append(NodeSpec(name=r["sn"], model=r["model"], gpus=_int(r["gpu"]),
                                cpu_milli=_int(r["cpu_milli"]),
                                memory_mib=_int(r["memory_mib"])))
        except ValueError as e:
            raise TraceError(f"{path}:{line}: node {r.get('sn')!r}: {e}") from e
    return out


def read_trace(path: Path = DEFAULT_TASKS, nodes: Sequence[NodeSpec] = ()) -> Trace:
    """The trace's tasks, each checked the way the scheduler service checks a request: decoded
    into the contracts' ``JobSpec``, then submitted to a scheduler core over ``nodes``, which
    rejects what it would reject (no GPUs, a share outside 1..1000, an unknown GPU model, more
    GPUs than any node has, a duplicate name). A CPU-only row (``num_gpu`` and ``gpu_milli``
    both 0) has no GPU request to check; the rest of it is checked the same way."""
    rows = _rows(path, TASK_COLUMNS)
    gate = _gate(nodes)
    tasks: list[Task] = []
    rejected: list[Rejected] = []
    for line, r in enumerate(rows, start=2):
        name = r.get("name") or f"line-{line}"
        try:
            task = _task(r)
        except ValueError as e:
            rejected.append(Rejected(line, name, str(e)))
            continue
        reason = gate(task)
        if reason is None:
            tasks.append(task)
        else:
            rejected.append(Rejected(line, name, reason))
    return Trace(tasks, rejected)


def load_tasks(path: Path = DEFAULT_TASKS) -> list[Task]:
    """The tasks of a trace that pass the service's checks (without a cluster to check the GPU
    models and sizes against; ``read_trace`` says which rows were left out and why)."""
    return read_trace(path).tasks


def _number(r: dict[str, str], col: str) -> int:
    text = (r.get(col) or "").strip()
    try:
        return _int(text)
    except ValueError:
        raise ValueError(f"{col}={text!r} is not a number") from None


def _task(r: dict[str, str]) -> Task:
    num_gpu, milli = _number(r, "num_gpu"), _number(r, "gpu_milli")
    cpu, mem = _number(r, "cpu_milli"), _number(r, "memory_mib")
    models = tuple(sorted(m for m in (r.get("gpu_spec") or "").split("|") if m))
    try:
        created = float(r.get("creation_time") or 0)
        deleted = float(r["deletion_time"]) if r.get("deletion_time") else None
        runtime = _runtime(r)
    except ValueError as e:
        raise ValueError(f"a time is not a number: {e}") from None
    return Task(name=r.get("name") or "", cpu_milli=cpu, memory_mib=mem, num_gpu=num_gpu,
                gpu_milli=milli, models=models, created=created, deleted=deleted,
                runtime=runtime)


def _request(task: Task) -> dict[str, object]:
    """The request a row makes, as the service would receive it."""
    req: dict[str, object] = {"job_id": task.name, "gpu_models": list(task.models),
                              "cpu_milli": task.cpu_milli, "memory_mib": task.memory_mib}
    if task.num_gpu != 0 or task.gpu_milli != 0:  # not a CPU-only row
        req["gpus"] = task.num_gpu
        req["gpu_milli"] = task.gpu_milli if task.num_gpu == 1 else FULL
    return req


def _gate(nodes: Sequence[NodeSpec]) -> Callable[[Task], str | None]:
    """Why the service would refuse a row's request, or None."""
    cluster = Cluster()
    for spec in nodes:
        cluster.upsert(spec)
    core = SchedulerCore(Profile(), clock=lambda: 0.0, cluster=cluster)

    def check(task: Task) -> str | None:
        try:
            spec = msgspec.convert(_request(task), JobSpec)
        except msgspec.ValidationError as e:
            return f"not a valid job request: {e}"
        for msg in core.handle(SubmitJob(job=spec)):
            if isinstance(msg, JobEvent) and msg.state == JobState.REJECTED:
                return msg.reason or "rejected"
        core.pending.clear()
        return None

    return check


def _runtime(row: dict[str, str]) -> float | None:
    """From scheduling (or creation) to deletion; None when the task was never deleted."""
    if not row.get("deletion_time"):
        return None
    begin = row.get("scheduled_time") or row.get("creation_time") or "0"
    return max(float(row["deletion_time"]) - float(begin), 1.0)


def load_paper(path: Path = PAPER_RESULTS) -> dict[str, dict[int, float]]:
    """policy -> arrived demand % -> the paper's allocation ratio % (mean of 10 seeds)."""
    out: dict[str, dict[int, float]] = {}
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            out.setdefault(r["policy"], {})[int(r["arrived_gpu_demand_pct"])] = float(
                r["gpu_allocation_ratio_pct_mean_of_10_seeds"])
    return out
