"""Encoding and decoding the hottest message: one 8-GPU node sample."""

from __future__ import annotations

import time

from bench.report import Result
from gpufleet.contracts import GpuSample, NodeSample, decoder_for, encode


def _sample() -> NodeSample:
    gpus = [
        GpuSample(index=i, uuid=f"GPU-{i:032x}", util_gpu=50.0, util_mem=20.0,
                  mem_used_bytes=40 << 30, mem_free_bytes=40 << 30, power_mw=350_000,
                  energy_mj=123_456_789, temp_c=60, sm_clock_mhz=1980, mem_clock_mhz=2619,
                  throttle_reasons=0)
        for i in range(8)
    ]
    return NodeSample(cluster="bench", node="node-0001", gpus=gpus)


def run(quick: bool) -> list[Result]:
    n = 20_000 if quick else 200_000
    msg = _sample()
    start = time.perf_counter()
    for _ in range(n):
        raw = encode(msg)
    enc = (time.perf_counter() - start) / n
    dec = decoder_for("gpu.samples")
    start = time.perf_counter()
    for _ in range(n):
        dec.decode(raw)
    dcd = (time.perf_counter() - start) / n
    return [
        Result("contracts", "encode 8-GPU node sample", enc * 1e6, "µs", note=f"{len(raw)} bytes"),
        Result("contracts", "decode+validate 8-GPU node sample", dcd * 1e6, "µs"),
    ]
