"""The simulated source: GPUs whose readings follow the jobs running on them.

``load()`` says how busy each GPU should be (percent, by GPU index); GPUs it leaves out are
idle. In the fleet simulator it is the executor's table of running jobs; a standalone node
reads its running-jobs file (``gpufleet.running.file_load``). Readings are
noisy.

``xids()`` says which GPUs report an XID error (XID by GPU index): in the fleet simulator, the
first GPU of a running job's first attempt whose env sets ``GPUFLEET_SIM_XID`` (an XID number;
anything else is ignored), so a test can make a GPU fail under a job, and the job, once moved,
runs on.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from gpufleet.contracts import UINT32_MAX, GpuInfo, GpuSample, Placement
from services.telemetry.sources import Due, Identity, Reading
from services.telemetry.sources.xid import xid_event

Load = Callable[[], Mapping[int, float]]
Xids = Callable[[], Mapping[int, int]]
XID_VAR = "GPUFLEET_SIM_XID"


@dataclass(frozen=True)
class Model:
    name: str
    memory_gib: int
    idle_w: int
    max_w: int
    sm_mhz: int
    mem_mhz: int


MODELS: dict[str, Model] = {m.name: m for m in (
    Model("H100-80GB", 80, 70, 700, 1980, 2619),
    Model("H200-141GB", 141, 75, 700, 1980, 3201),
    Model("A100-80GB", 80, 55, 400, 1410, 1593),
    Model("L40S-48GB", 48, 35, 350, 2520, 9001),
    Model("B200-180GB", 180, 120, 1000, 1965, 3996),
)}


def no_load() -> Mapping[int, float]:
    return {}


def no_xids() -> Mapping[int, int]:
    return {}


def xids_of(placements: Iterable[Placement]) -> dict[int, int]:
    """GPU index -> XID, from the running first attempts that ask their first GPU to fail."""
    out: dict[int, int] = {}
    for p in placements:
        text = p.job.env.get(XID_VAR, "")
        # The submitter writes it: only a decimal number that fits the samples' XID field.
        if text.isdecimal() and len(text) <= 10 and int(text) <= UINT32_MAX and p.gpus \
                and p.attempt == 0:
            out[p.gpus[0]] = int(text)
    return out


class SimSource:
    def __init__(self, node: str, gpus: int = 8, model: str = "H100-80GB",
                 load: Load = no_load, seed: int | None = None, xids: Xids = no_xids) -> None:
        if model not in MODELS:
            raise ValueError(f"unknown GPU model {model!r}; known: {', '.join(MODELS)}")
        self._m = MODELS[model]
        self._load = load
        self._xids = xids
        self._rng = random.Random(seed if seed is not None else hash(node))
        self._uuids = [f"GPU-sim-{node}-{i}" for i in range(gpus)]
        self._energy = [0.0] * gpus
        self._last: float | None = None
        self._ident = Identity(
            gpus=[GpuInfo(index=i, uuid=u, model=self._m.name,
                          memory_total_bytes=self._m.memory_gib << 30,
                          pci_bus_id=f"00000000:{0x18 + i:02X}:00.0", mig_mode=False,
                          nvlink_domain=0) for i, u in enumerate(self._uuids)],
            driver_version="sim")

    def identity(self) -> Identity:
        return self._ident

    def read(self, now: float, due: Due) -> Reading:
        dt = 0.0 if self._last is None else max(0.0, now - self._last)
        self._last = now
        load = self._load()
        events = [xid_event(g, x) for g, x in sorted(self._xids().items())
                  if 0 <= g < len(self._uuids)]
        return Reading(gpus=[self._gpu(i, load.get(i, 0.0), dt)
                             for i in range(len(self._uuids))], events=events)

    def _gpu(self, i: int, target: float, dt: float) -> GpuSample:
        m, r = self._m, self._rng.random()
        busy = target > 0
        util = min(100.0, max(0.0, target + (r - 0.5) * 6)) if busy else float(r < 0.05)
        frac = util / 100
        total = m.memory_gib << 30
        used = int(total * (0.25 + 0.6 * frac)) if busy else 512 << 20
        power = m.idle_w + (m.max_w - m.idle_w) * frac * (0.9 + 0.1 * r)
        self._energy[i] += power * dt * 1000
        return GpuSample(
            index=i, uuid=self._uuids[i], util_gpu=round(util, 1),
            util_mem=round(util * 0.6, 1), mem_used_bytes=used, mem_free_bytes=total - used,
            mem_reserved_bytes=512 << 20, power_mw=int(power * 1000),
            energy_mj=int(self._energy[i]), temp_c=int(30 + 45 * frac + 3 * r),
            sm_clock_mhz=m.sm_mhz if busy else 345, mem_clock_mhz=m.mem_mhz, throttle_reasons=0,
            sm_active=round(util * 0.85, 1) if busy else 0.0,
            tensor_active=round(util * 0.5, 1) if busy else 0.0,
        )

    def close(self) -> None:
        pass
