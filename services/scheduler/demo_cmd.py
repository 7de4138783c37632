"""``gpufleet demo-workload``: a steady stream of demo jobs, drawn from the Alibaba trace.

Each job keeps the trace task's shape (whole GPUs or a share of one, CPU and memory) and gets
``sim_duration_s`` and ``sim_util`` so the simulated fleet runs it; tenants and priorities are
drawn too. The defaults suit ``make run`` (16 nodes of 8 GPUs): about one job every two seconds,
each running one to five minutes, which keeps the fleet busy without an endless queue.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import uuid

import numpy as np

from gpufleet.bus import make_producer, publish
from gpufleet.config import BusSettings, load
from gpufleet.contracts import JobSpec, SubmitJob
from gpufleet.runner import run_service
from services.scheduler.jobs import FULL
from services.scheduler.sim.trace import Task, load_tasks

log = logging.getLogger(__name__)
TENANTS = ("research", "prod", "interns")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rate", type=float, default=0.5, help="jobs per second")
    parser.add_argument("--count", type=int, default=0, help="stop after N jobs (0: never)")
    parser.add_argument("--min-s", type=float, default=60.0, help="shortest job run, seconds")
    parser.add_argument("--max-s", type=float, default=300.0, help="longest job run, seconds")
    parser.add_argument("--max-gpus", type=int, default=8, help="largest job, in GPUs")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: random)")


def demo_spec(task: Task, rng: np.random.Generator, min_s: float, max_s: float) -> JobSpec:
    duration = float(rng.uniform(min_s, max_s))
    fractional = task.num_gpu == 1 and task.gpu_milli < FULL
    return JobSpec(
        job_id=f"demo-{uuid.uuid4().hex[:10]}",
        tenant=TENANTS[int(rng.integers(len(TENANTS)))],
        priority=10 if rng.random() < 0.1 else 0,
        gpus=task.num_gpu,
        gpu_milli=task.gpu_milli if fractional else FULL,
        cpu_milli=min(task.cpu_milli, 16_000),
        memory_mib=min(task.memory_mib, 65_536),
        est_runtime_s=duration,
        sim_duration_s=duration,
        sim_util=float(rng.uniform(20, 95)),
    )


def run(args: argparse.Namespace) -> int:
    settings = load(BusSettings)
    tasks = [t for t in load_tasks() if 0 < t.num_gpu <= args.max_gpus]
    rng = np.random.default_rng(args.seed)

    async def main(stop: asyncio.Event) -> None:
        producer = make_producer(settings)
        await producer.start()
        sent = 0
        try:
            while not stop.is_set() and (args.count == 0 or sent < args.count):
                task = tasks[int(rng.integers(len(tasks)))]
                spec = demo_spec(task, rng, args.min_s, args.max_s)
                await publish(producer, settings, "jobs.requests", SubmitJob(job=spec))
                sent += 1
                if sent % 50 == 0:
                    log.info("submitted %d demo jobs", sent)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=float(rng.exponential(
                        1.0 / args.rate)))
        finally:
            await producer.stop()

    return run_service(main, settings.log_level)
