"""Poison and random records for every input topic: bytes that are not JSON, JSON of the wrong
shape, and messages that decode but carry values at or past every bound (the ones found in
issue 10 among them). Their keys and job ids start with ``poison-`` so the checks can leave
them out; nothing here names a real node or job."""

from __future__ import annotations

import json
import random
from typing import Any

POISON_PREFIX = "poison-"
INPUT_TOPICS = ("gpu.samples", "nodes", "jobs.requests", "jobs.placements", "jobs.events",
                "gpu.util")
HUGE = 2**70


def _boundary(topic: str, n: int, ts: float) -> dict[str, Any]:
    node, job = f"{POISON_PREFIX}node-{n}", f"{POISON_PREFIX}job-{n}"
    base: dict[str, Any] = {"schema": 1, "event_id": f"{POISON_PREFIX}{n}", "ts": ts}
    if topic == "gpu.samples":
        return {**base, "cluster": "chaos", "node": node, "seq": 2**63,
                "gpus": [{"index": 10**9, "uuid": "x" * 300, "util_gpu": 100,
                          "energy_mj": HUGE, "sm_clock_mhz": HUGE, "temp_c": -(2**40)}]}
    if topic == "nodes":
        return {**base, "cluster": "chaos", "node": node, "cpu_milli": HUGE,
                "gpus": [{"index": 1023 + n % 3, "uuid": "u", "model": "H100-80GB",
                          "memory_total_bytes": HUGE}]}
    if topic == "jobs.requests":
        return {**base, "kind": "submit",
                "job": {"job_id": job, "gpus": 2**63, "gang": 2**40, "est_runtime_s": -1.0,
                        "sim_duration_s": 1e308, "gpu_models": ["m" * 100_000]}}
    if topic == "jobs.placements":
        return {**base, "kind": "place", "node": node, "gpus": [10**9], "attempt": HUGE,
                "job": {"job_id": job, "gpus": 1}}
    if topic == "jobs.events":
        return {**base, "job_id": job, "state": "started", "exit_code": HUGE, "gpus": [10**9],
                "attempt": HUGE, "node": node, "gpu_milli": -5}
    return {**base, "cluster": "chaos", "node": node, "gpu": 10**9, "window_start": ts,
            "samples": HUGE, "util_mean": 100, "util_min": 0, "util_max": 100,
            "util_p95": 100, "energy_mj": HUGE}


def poison_record(topic: str, n: int, ts: float, rng: random.Random) -> tuple[bytes, bytes]:
    """(key, value) of the n-th poison record for a topic: one of four kinds in turn."""
    key = f"{POISON_PREFIX}{n}".encode()
    kind = n % 4
    if kind == 0:
        return key, rng.randbytes(rng.randint(1, 256))
    if kind == 1:
        return key, json.dumps([1, "two", {"three": None}]).encode()
    if kind == 2:
        return key, json.dumps({"schema": 99, "kind": "nonsense", "ts": "yesterday"}).encode()
    return key, json.dumps(_boundary(topic, n, ts)).encode()
