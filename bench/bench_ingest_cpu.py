"""Ingest's own CPU: seconds of the worker process's CPU time per million stored GPU-samples.

A backlog of node samples (8 GPUs each) is drained through one ``gpufleet ingest`` worker
process. Its CPU time is read from ``/proc/<pid>/stat`` (user + system, the process's own, so
the figure holds on a shared machine) once every row is queryable. Two drains, of a quarter and
of all the samples, each through a fresh worker: the slope between them is the cost per
GPU-sample, start-up left out.

``python -m bench.bench_ingest_cpu --profile`` runs the same drain with the worker under
cProfile and prints its top costs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import pstats
import signal
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

from bench.bench_ingest import _fresh, _stack
from bench.ingest_load import Fleet, publish_backlog, raw_count
from bench.report import Result
from gpufleet.config import describe
from services.ingest.config import IngestSettings

AREA = "ingest"
GPUS = 8
TICK_S = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (its own, not its children's)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK_S  # utime, stime (fields 14, 15)


def run(quick: bool) -> list[Result]:
    n_msgs = 6_000 if quick else 30_000
    with _stack() as (bootstrap, ch_url):
        return asyncio.run(_measure(bootstrap, ch_url, n_msgs, None))


@contextlib.asynccontextmanager
async def _worker(settings: IngestSettings, profile: Path | None
                  ) -> AsyncIterator[asyncio.subprocess.Process]:
    env = {**os.environ, **{k: str(v) for k, v in describe(settings).items()},
           "GPUFLEET_CLICKHOUSE_URL": settings.clickhouse_url,
           "GPUFLEET_INGEST_GROUP_ID": "bench-cpu"}
    python = [sys.executable]
    if profile is not None and profile.suffix == ".prof":
        python += ["-m", "cProfile", "-o", str(profile)]
    proc = await asyncio.create_subprocess_exec(
        *python, "-m", "services.ingest", "--workers", "1", env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    spy = None
    if profile is not None and profile.suffix != ".prof":
        # every thread's stacks, sampled (cProfile sees only the main thread; inserts run in
        # another); py-spy writes them when the worker ends
        spy = await asyncio.create_subprocess_exec(
            "py-spy", "record", "--gil", "-r", "250", "-f", "raw", "-o", str(profile),
            "-p", str(proc.pid), stdout=asyncio.subprocess.DEVNULL)
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 60)
        if spy is not None:
            await asyncio.wait_for(spy.wait(), 60)


async def _drain(bootstrap: str, ch_url: str, n_msgs: int, profile: Path | None
                 ) -> tuple[float, int]:
    """Drain ``n_msgs`` node messages through a fresh worker: its CPU seconds once every row
    is queryable (read before it stops), and the rows."""
    settings = await _fresh(bootstrap, ch_url)
    prefix = f"cpu{uuid.uuid4().hex[:6]}"
    await publish_backlog(settings, Fleet(prefix, nodes=200, gpus=GPUS), n_msgs,
                          time.time() - 900)
    want = n_msgs * GPUS
    async with _worker(settings, profile) as proc:
        got = 0
        deadline = time.monotonic() + 600
        while got < want and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            got = await asyncio.to_thread(raw_count, ch_url, prefix + "-")
        cpu = cpu_seconds(proc.pid)
    if got < want:
        raise RuntimeError(f"only {got:,} of {want:,} rows stored within 600 s")
    return cpu, got


async def _measure(bootstrap: str, ch_url: str, n_msgs: int, profile: Path | None
                   ) -> list[Result]:
    """The slope between a drain of a quarter of ``n_msgs`` and one of ``n_msgs``: start-up
    and the last idle polls are in both, and drop out."""
    small = await _drain(bootstrap, ch_url, n_msgs // 4, None)
    cpu, rows = await _drain(bootstrap, ch_url, n_msgs, profile)
    per = (cpu - small[0]) / (rows - small[1])
    note = (f"slope between {small[1]:,} and {rows:,} samples drained by 1 worker "
            f"({small[0]:.1f} and {cpu:.1f} CPU s, start-up included); "
            f"{1 / per:,.0f} GPU-samples/s per core")
    return [Result(AREA, "worker CPU per million stored GPU-samples (= µs per sample)",
                   per * 1e6, "CPU s", aim="≤ 4", note=note)]


def print_spy(raw: Path, top: int) -> None:
    """Top functions of py-spy's collapsed stacks: by own samples, and by samples under them."""
    own: Counter[str] = Counter()
    under: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        frames = stack.split(";")
        total += n
        own[frames[-1]] += n
        for f in set(frames):
            under[f] += n
    for title, counts in (("own", own), ("under", under)):
        print(f"-- top by {title} samples (of {total})")
        for frame, n in counts.most_common(top):
            print(f"{100 * n / total:5.1f}%  {frame}")


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m bench.bench_ingest_cpu")
    p.add_argument("--msgs", type=int, default=30_000, help="node messages (8 GPUs each)")
    p.add_argument("--profile", action="store_true", help="run the worker under cProfile")
    p.add_argument("--spy", action="store_true",
                   help="sample the worker's threads with py-spy (pip install py-spy)")
    p.add_argument("--top", type=int, default=30)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = (Path(tmp) / "ingest.prof" if args.profile
               else Path(tmp) / "ingest.txt" if args.spy else None)
        with _stack() as (bootstrap, ch_url):
            results = asyncio.run(_measure(bootstrap, ch_url, args.msgs, out))
        for r in results:
            print(f"{r.metric}: {r.value:.2f} {r.unit} ({r.note})")
        if out is not None and args.spy:
            print_spy(out, args.top)
        elif out is not None:
            stats = pstats.Stats(str(out))
            stats.sort_stats("tottime").print_stats(args.top)
            stats.sort_stats("cumulative").print_stats(args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
