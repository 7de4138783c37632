"""The NVML source: this node's real GPUs, through pynvml (nvidia-ml-py).

Cadence: the fast fields every tick; processes when ``due.processes``; ECC and row remapping
when ``due.health``; SM and tensor activity from GPM (Hopper and newer) every tick; XID errors
from a thread blocked in ``nvmlEventSetWait_v2`` (``xid.py``). A field the GPU does not
support is ``None``. ``GpuIsLost`` marks the GPU lost; any other NVML error marks it degraded.
Neither raises.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import Any

import pynvml

from gpufleet.contracts import GpuHealth, GpuInfo, GpuProcess, GpuSample
from services.telemetry.sources import Due, HealthEvent, Identity, Reading
from services.telemetry.sources.xid import XidWatcher

log = logging.getLogger(__name__)

class NvmlUnavailable(Exception):
    """NVML could not start (no driver, no GPU): the message says why."""


class _GpuLost(Exception):
    pass


def _text(value: bytes | str) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _pct(value: float) -> float:
    return min(100.0, max(0.0, float(value)))


class NvmlSource:
    def __init__(self, xid_wait_ms: int = 500, lib: Any = None) -> None:
        self._nv: Any = lib if lib is not None else pynvml
        try:
            self._nv.nvmlInit()
        except self._nv.NVMLError as e:
            raise NvmlUnavailable(f"NVML did not start: {e}") from e
        self._handles = [self._nv.nvmlDeviceGetHandleByIndex(i)
                         for i in range(self._nv.nvmlDeviceGetCount())]
        self._uuids = [f"GPU-unknown-{i}" for i in range(len(self._handles))]
        self._lost: set[int] = set()
        self._failed: set[tuple[int, str]] = set()  # (gpu, function) already reported
        self._mem_v2 = [True] * len(self._handles)
        self._gpm: set[int] = set()
        self._gpm_prev: dict[int, Any] = {}
        self._events: deque[HealthEvent] = deque()  # appended by the XID thread too
        self._ident = self._read_identity()
        self._xid = XidWatcher(self._nv, self._handles, self._events, xid_wait_ms)

    # identity, once ---------------------------------------------------------------------

    def identity(self) -> Identity:
        return self._ident

    def _read_identity(self) -> Identity:
        nv = self._nv
        gpus = []
        for i, h in enumerate(self._handles):
            try:
                self._uuids[i] = _text(nv.nvmlDeviceGetUUID(h))
                pci = self._optional(nv.nvmlDeviceGetPciInfo, h)
                mig = self._optional(nv.nvmlDeviceGetMigMode, h)
                gpus.append(GpuInfo(
                    index=i, uuid=self._uuids[i], model=_text(nv.nvmlDeviceGetName(h)),
                    memory_total_bytes=int(nv.nvmlDeviceGetMemoryInfo(h).total),
                    pci_bus_id=None if pci is None else _text(pci.busId),
                    mig_mode=None if mig is None else mig[0] == nv.NVML_DEVICE_MIG_ENABLE,
                ))
                if self._optional(self._gpm_supported, h):
                    self._gpm.add(i)
            except nv.NVMLError as e:
                self._lost.add(i)
                reason = f"unreadable at start: {e}"
                gpus.append(GpuInfo(index=i, uuid=self._uuids[i], model="unknown",
                                    memory_total_bytes=0, health=GpuHealth.LOST,
                                    health_reason=reason))
        driver = self._optional(nv.nvmlSystemGetDriverVersion)
        return Identity(gpus=gpus, driver_version=None if driver is None else _text(driver))

    def _gpm_supported(self, h: Any) -> bool:
        nv = self._nv
        if nv.nvmlDeviceGetArchitecture(h) < nv.NVML_DEVICE_ARCH_HOPPER:
            return False
        return bool(nv.nvmlGpmQueryDeviceSupport(h).isSupportedDevice)

    def _optional(self, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return fn(*args)
        except self._nv.NVMLError:
            return None

    # every tick -------------------------------------------------------------------------

    def read(self, now: float, due: Due) -> Reading:
        gpus = [self._read_gpu(i, due) for i in range(len(self._handles))]
        for i, xids in self._xid.take().items():
            gpus[i].xid_errors = xids
        events = []
        while self._events:
            events.append(self._events.popleft())
        return Reading(gpus=gpus, events=events)

    def _read_gpu(self, i: int, due: Due) -> GpuSample:
        sample = GpuSample(index=i, uuid=self._uuids[i])
        if i in self._lost:
            return sample
        try:
            self._fast(i, sample)
            if due.processes:
                self._processes(i, sample)
            if due.health:
                self._ecc(i, sample)
            if i in self._gpm:
                self._gpm_activity(i, sample)
        except _GpuLost:
            return GpuSample(index=i, uuid=self._uuids[i])
        return sample

    def _get(self, i: int, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(handle, *args)``, or None where unsupported; errors become health events."""
        nv = self._nv
        try:
            return fn(self._handles[i], *args)
        except (nv.NVMLError_NotSupported, nv.NVMLError_FunctionNotFound,
                nv.NVMLError_NoPermission, nv.NVMLLibraryMismatchError):
            return None  # the driver lacks it: absent
        except nv.NVMLError_GpuIsLost as e:
            self._lost.add(i)
            self._events.append(HealthEvent(i, GpuHealth.LOST, "gpu_lost", f"GPU is lost ({e})",
                                            "critical"))
            raise _GpuLost from e
        except nv.NVMLError as e:
            name = getattr(fn, "__name__", "nvml")
            if (i, name) not in self._failed:
                self._failed.add((i, name))
                self._events.append(HealthEvent(i, GpuHealth.DEGRADED, "nvml_error",
                                                f"{name}: {e}"))
            return None

    def _fast(self, i: int, s: GpuSample) -> None:
        nv = self._nv
        util = self._get(i, nv.nvmlDeviceGetUtilizationRates)
        if util is not None:
            s.util_gpu, s.util_mem = _pct(util.gpu), _pct(util.memory)
        self._memory(i, s)
        s.power_mw = self._get(i, nv.nvmlDeviceGetPowerUsage)
        s.energy_mj = self._get(i, nv.nvmlDeviceGetTotalEnergyConsumption)
        s.temp_c = self._get(i, nv.nvmlDeviceGetTemperature, nv.NVML_TEMPERATURE_GPU)
        s.sm_clock_mhz = self._get(i, nv.nvmlDeviceGetClockInfo, nv.NVML_CLOCK_SM)
        s.mem_clock_mhz = self._get(i, nv.nvmlDeviceGetClockInfo, nv.NVML_CLOCK_MEM)
        s.throttle_reasons = self._get(i, nv.nvmlDeviceGetCurrentClocksEventReasons)

    def _memory(self, i: int, s: GpuSample) -> None:
        nv = self._nv
        mem = None
        if self._mem_v2[i]:
            mem = self._get(i, nv.nvmlDeviceGetMemoryInfo, nv.nvmlMemory_v2)
            self._mem_v2[i] = mem is not None
            if mem is not None:
                s.mem_reserved_bytes = int(mem.reserved)
        if mem is None:
            mem = self._get(i, nv.nvmlDeviceGetMemoryInfo)
        if mem is not None:
            s.mem_used_bytes, s.mem_free_bytes = int(mem.used), int(mem.free)

    def _processes(self, i: int, s: GpuSample) -> None:
        procs = self._get(i, self._nv.nvmlDeviceGetComputeRunningProcesses)
        if procs is not None:
            s.processes = [GpuProcess(pid=int(p.pid), used_memory_bytes=p.usedGpuMemory)
                           for p in procs]

    def _ecc(self, i: int, s: GpuSample) -> None:
        nv = self._nv
        get, ecc = self._get, nv.nvmlDeviceGetTotalEccErrors
        s.ecc_volatile_corrected = get(i, ecc, nv.NVML_MEMORY_ERROR_TYPE_CORRECTED,
                                       nv.NVML_VOLATILE_ECC)
        s.ecc_volatile_uncorrected = get(i, ecc, nv.NVML_MEMORY_ERROR_TYPE_UNCORRECTED,
                                         nv.NVML_VOLATILE_ECC)
        rows = get(i, nv.nvmlDeviceGetRemappedRows)
        if rows is not None:
            s.remapped_rows_pending, s.remapped_rows_failure = bool(rows[2]), bool(rows[3])
            if rows[3]:
                self._events.append(HealthEvent(i, GpuHealth.DEGRADED, "row_remap_failure",
                                                "row remapping failed", "critical"))

    def _gpm_activity(self, i: int, s: GpuSample) -> None:
        nv = self._nv
        try:
            sample = nv.nvmlGpmSampleGet(self._handles[i], nv.nvmlGpmSampleAlloc())
            prev, self._gpm_prev[i] = self._gpm_prev.get(i), sample
            if prev is None:
                return
            mg = nv.c_nvmlGpmMetricsGet_t()
            mg.version, mg.numMetrics = nv.NVML_GPM_METRICS_GET_VERSION, 2
            mg.sample1, mg.sample2 = prev, sample
            mg.metrics[0].metricId = nv.NVML_GPM_METRIC_SM_UTIL
            mg.metrics[1].metricId = nv.NVML_GPM_METRIC_ANY_TENSOR_UTIL
            nv.nvmlGpmMetricsGet(mg)
            nv.nvmlGpmSampleFree(prev)
        except nv.NVMLError as e:
            log.warning("GPU %d: GPM off after %s", i, e)
            self._gpm.discard(i)
            return
        if mg.metrics[0].nvmlReturn == nv.NVML_SUCCESS:
            s.sm_active = _pct(mg.metrics[0].value)
        if mg.metrics[1].nvmlReturn == nv.NVML_SUCCESS:
            s.tensor_active = _pct(mg.metrics[1].value)

    def close(self) -> None:
        self._xid.close()
        for s in self._gpm_prev.values():
            self._optional(self._nv.nvmlGpmSampleFree, s)
        self._gpm_prev.clear()
        self._optional(self._nv.nvmlShutdown)
