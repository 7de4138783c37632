"""Fluent builders for warehouse test rows."""

from __future__ import annotations

import datetime as dt
from typing import Any

# recent, so that the tables' TTL (30 days for raw samples) keeps the rows
T0 = (dt.datetime.now(dt.UTC).replace(tzinfo=None, minute=0, second=0, microsecond=0)
      - dt.timedelta(hours=3))

SAMPLE_COLUMNS = [
    "cluster", "node", "gpu", "uuid", "ts", "util_gpu", "util_mem", "mem_used_bytes",
    "mem_free_bytes", "mem_reserved_bytes", "power_mw", "energy_mj", "temp_c", "mem_temp_c",
    "sm_clock_mhz", "mem_clock_mhz", "throttle_reasons", "sm_active", "tensor_active",
    "ecc_volatile_corrected", "ecc_volatile_uncorrected", "remapped_rows_pending",
    "remapped_rows_failure", "xid_errors",
]


class SampleRows:
    """``samples("c1").nodes(2).gpus(4).ticks(10).without("sm_active").rows()``"""

    def __init__(self, cluster: str) -> None:
        self._cluster, self._nodes, self._gpus, self._ticks = cluster, 1, 1, 1
        self._absent: set[str] = set()

    def nodes(self, n: int) -> SampleRows:
        self._nodes = n
        return self

    def gpus(self, n: int) -> SampleRows:
        self._gpus = n
        return self

    def ticks(self, n: int) -> SampleRows:
        self._ticks = n
        return self

    def without(self, *columns: str) -> SampleRows:
        self._absent.update(columns)
        return self

    def _row(self, node: int, gpu: int, tick: int) -> list[Any]:
        i = (node * self._gpus + gpu) * self._ticks + tick
        values: dict[str, Any] = {
            "cluster": self._cluster, "node": f"n{node:03d}", "gpu": gpu,
            "uuid": f"GPU-{node:03d}-{gpu}", "ts": T0 + dt.timedelta(seconds=tick),
            "util_gpu": i % 101, "util_mem": (i * 7) % 101, "mem_used_bytes": i * 1 << 20,
            "mem_free_bytes": 80 << 30, "mem_reserved_bytes": 512 << 20,
            "power_mw": 300_000 + i % 1000, "energy_mj": 10**9 + i * 300_000, "temp_c": 40 + i % 30,
            "mem_temp_c": 50 + i % 20, "sm_clock_mhz": 1980, "mem_clock_mhz": 2619,
            "throttle_reasons": 4 if i % 5 == 0 else 0, "sm_active": (i % 64) / 64,
            "tensor_active": (i % 32) / 64,  # sixty-fourths: exact in Float32
            "ecc_volatile_corrected": i % 3,
            "ecc_volatile_uncorrected": 0, "remapped_rows_pending": i % 2 == 0,
            "remapped_rows_failure": False, "xid_errors": [79] if i % 997 == 0 else [],
        }
        return [None if c in self._absent else values[c] for c in SAMPLE_COLUMNS]

    def rows(self) -> list[list[Any]]:
        return [self._row(n, g, t) for n in range(self._nodes) for g in range(self._gpus)
                for t in range(self._ticks)]


def samples(cluster: str) -> SampleRows:
    return SampleRows(cluster)


# One small valid row per table the pipeline writes, by table: (columns, row).
PIPELINE_ROWS: dict[str, tuple[list[str], list[Any]]] = {
    "gpu_samples": (["cluster", "node", "gpu", "uuid", "ts", "util_gpu"],
                    ["c", "n1", 0, "GPU-0", T0, 50]),
    "gpu_util_1m": (["cluster", "node", "gpu", "uuid", "window_start", "samples", "util_mean",
                     "util_min", "util_max", "util_p95", "job_id", "tenant"],
                    ["c", "n1", 0, "GPU-0", T0, 60, 50.0, 10.0, 90.0, 88.0, "j1", "t1"]),
    "job_events": (["event_id", "ts", "job_id", "state", "tenant", "gpus"],
                   ["e1", T0, "j1", "started", "t1", [0, 1]]),
    "placements": (["event_id", "ts", "job_id", "tenant", "node", "gpus"],
                   ["e1", T0, "j1", "t1", "n1", [0, 1]]),
    "nodes": (["cluster", "node", "gpu", "uuid", "model", "memory_total_bytes", "ts"],
              ["c", "n1", 0, "GPU-0", "H100", 80 << 30, T0]),
    "alerts": (["event_id", "ts", "alert_id", "kind", "state", "message"],
               ["e1", T0, "a1", "idle_gpu", "firing", "idle"]),
}
