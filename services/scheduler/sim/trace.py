"""Reading traces in the Alibaba GPU 2023 CSV format (the default one ships in ``data/``)."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from gpufleet.contracts import JobSpec
from services.scheduler.cluster import NodeSpec
from services.scheduler.jobs import FULL, Job

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


def _int(text: str) -> int:
    return int(float(text)) if text else 0


def load_nodes(path: Path = DEFAULT_NODES) -> list[NodeSpec]:
    with open(path, newline="") as f:
        return [NodeSpec(name=r["sn"], model=r["model"], gpus=_int(r["gpu"]),
                         cpu_milli=_int(r["cpu_milli"]), memory_mib=_int(r["memory_mib"]))
                for r in csv.DictReader(f)]


def load_tasks(path: Path = DEFAULT_TASKS) -> list[Task]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return [Task(name=r["name"], cpu_milli=_int(r["cpu_milli"]),
                 memory_mib=_int(r["memory_mib"]), num_gpu=_int(r["num_gpu"]),
                 gpu_milli=_int(r["gpu_milli"]),
                 models=tuple(sorted(m for m in r.get("gpu_spec", "").split("|") if m)),
                 created=float(r.get("creation_time") or 0),
                 deleted=float(r["deletion_time"]) if r.get("deletion_time") else None,
                 runtime=_runtime(r))
            for r in rows]


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
