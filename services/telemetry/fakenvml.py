"""A fake of the pynvml functions the NVML source uses, for tests and benchmarks.

``FakeNvml`` stands in for the ``pynvml`` module: its methods have pynvml's names and
arguments; constants and the ``NVMLError_*`` classes are the real module's. Each GPU is a
``FakeGpu`` whose fields a test sets; ``unsupported`` names functions that raise NotSupported,
``too_new`` names functions the driver's NVML lacks (pynvml's version mismatch error),
``errors`` maps a function name to the NVML error code it raises, ``lost`` makes every call
raise GpuIsLost.
"""

from __future__ import annotations

import queue
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pynvml


@dataclass
class FakeGpu:
    uuid: str = "GPU-00000000-0000-0000-0000-000000000000"
    name: str = "NVIDIA H100 80GB HBM3"
    pci_bus_id: str = "00000000:18:00.0"
    arch: int = pynvml.NVML_DEVICE_ARCH_HOPPER
    gpm: bool = True
    mig: int | None = 0  # None: MIG not supported
    total: int = 80 << 30
    used: int = 1 << 30
    reserved: int = 512 << 20
    util: int = 0
    mem_util: int = 0
    power_mw: int = 70_000
    energy_mj: int = 1_000_000
    temp_c: int = 35
    sm_mhz: int = 1980
    mem_mhz: int = 2619
    clock_reasons: int = 0
    processes: list[tuple[int, int | None]] = field(default_factory=list)
    ecc_corrected: int = 0
    ecc_uncorrected: int = 0
    remapped: tuple[int, int, int, int] = (0, 0, 0, 0)
    sm_active: float = 0.0
    tensor_active: float = 0.0
    unsupported: set[str] = field(default_factory=set)
    too_new: set[str] = field(default_factory=set)  # pynvml newer than the driver
    errors: dict[str, int] = field(default_factory=dict)
    lost: bool = False


def fake_gpus(n: int) -> list[FakeGpu]:
    return [FakeGpu(uuid=f"GPU-{i:08x}-fake", pci_bus_id=f"00000000:{0x18 + i:02X}:00.0")
            for i in range(n)]


class _GpmMetricsGet:
    def __init__(self) -> None:
        self.version = 0
        self.numMetrics = 0
        self.sample1: Any = None
        self.sample2: Any = None
        self.metrics = [SimpleNamespace(metricId=0, nvmlReturn=0, value=0.0) for _ in range(8)]


class FakeNvml:
    c_nvmlGpmMetricsGet_t = _GpmMetricsGet

    def __init__(self, gpus: list[FakeGpu], init_error: int | None = None,
                 driver: str = "550.54.15") -> None:
        self.gpus = gpus
        self.init_error = init_error
        self.driver = driver
        self.initialized = False
        self.gpm_live = 0  # allocated GPM samples not yet freed
        self.calls: dict[str, int] = {}
        self._event_sets: list[queue.Queue[Any]] = []

    def __getattr__(self, name: str) -> Any:
        value = getattr(pynvml, name)
        if callable(value) and name.startswith("nvml") and not isinstance(value, type):
            raise AttributeError(f"the fake NVML has no {name}")
        return value

    # test controls
    def inject_xid(self, index: int, xid: int) -> None:
        for q in self._event_sets:
            q.put(SimpleNamespace(device=index, eventType=pynvml.nvmlEventTypeXidCriticalError,
                                  eventData=xid, gpuInstanceId=0, computeInstanceId=0))

    def _gpu(self, handle: int, fn: str) -> FakeGpu:
        self.calls[fn] = self.calls.get(fn, 0) + 1
        if not self.initialized:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_UNINITIALIZED)
        gpu = self.gpus[handle]
        if gpu.lost:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_GPU_IS_LOST)
        if fn in gpu.errors:
            raise pynvml.NVMLError(gpu.errors[fn])
        if fn in gpu.unsupported:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        if fn in gpu.too_new:
            raise pynvml.NVMLLibraryMismatchError(f"{fn}: the driver's NVML is older")
        return gpu

    # library
    def nvmlInit(self) -> None:
        if self.init_error is not None:
            raise pynvml.NVMLError(self.init_error)
        self.initialized = True

    def nvmlShutdown(self) -> None:
        self.initialized = False

    def nvmlSystemGetDriverVersion(self) -> str:
        return self.driver

    def nvmlDeviceGetCount(self) -> int:
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return index

    def nvmlDeviceGetIndex(self, handle: int) -> int:
        return handle

    # identity
    def nvmlDeviceGetUUID(self, h: int) -> str:
        return self._gpu(h, "nvmlDeviceGetUUID").uuid

    def nvmlDeviceGetName(self, h: int) -> str:
        return self._gpu(h, "nvmlDeviceGetName").name

    def nvmlDeviceGetPciInfo(self, h: int) -> Any:
        return SimpleNamespace(busId=self._gpu(h, "nvmlDeviceGetPciInfo").pci_bus_id.encode())

    def nvmlDeviceGetMigMode(self, h: int) -> list[int]:
        gpu = self._gpu(h, "nvmlDeviceGetMigMode")
        if gpu.mig is None:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return [gpu.mig, gpu.mig]

    def nvmlDeviceGetArchitecture(self, h: int) -> int:
        return self._gpu(h, "nvmlDeviceGetArchitecture").arch

    def nvmlGpmQueryDeviceSupport(self, h: int) -> Any:
        return SimpleNamespace(isSupportedDevice=int(self._gpu(h, "nvmlGpmQueryDeviceSupport").gpm))

    # every tick
    def nvmlDeviceGetUtilizationRates(self, h: int) -> Any:
        gpu = self._gpu(h, "nvmlDeviceGetUtilizationRates")
        return SimpleNamespace(gpu=gpu.util, memory=gpu.mem_util)

    def nvmlDeviceGetMemoryInfo(self, h: int, version: int | None = None) -> Any:
        gpu = self._gpu(h, "nvmlDeviceGetMemoryInfo" if not version else
                        "nvmlDeviceGetMemoryInfo_v2")
        free = gpu.total - gpu.used - (gpu.reserved if version else 0)
        if not version:
            return SimpleNamespace(total=gpu.total, free=free, used=gpu.used)
        return SimpleNamespace(version=version, total=gpu.total, reserved=gpu.reserved,
                               free=free, used=gpu.used)

    def nvmlDeviceGetPowerUsage(self, h: int) -> int:
        return self._gpu(h, "nvmlDeviceGetPowerUsage").power_mw

    def nvmlDeviceGetTotalEnergyConsumption(self, h: int) -> int:
        return self._gpu(h, "nvmlDeviceGetTotalEnergyConsumption").energy_mj

    def nvmlDeviceGetTemperature(self, h: int, sensor: int) -> int:
        return self._gpu(h, "nvmlDeviceGetTemperature").temp_c

    def nvmlDeviceGetClockInfo(self, h: int, clock: int) -> int:
        gpu = self._gpu(h, "nvmlDeviceGetClockInfo")
        return gpu.sm_mhz if clock == pynvml.NVML_CLOCK_SM else gpu.mem_mhz

    def nvmlDeviceGetCurrentClocksEventReasons(self, h: int) -> int:
        return self._gpu(h, "nvmlDeviceGetCurrentClocksEventReasons").clock_reasons

    def nvmlDeviceGetComputeRunningProcesses(self, h: int) -> list[Any]:
        gpu = self._gpu(h, "nvmlDeviceGetComputeRunningProcesses")
        return [SimpleNamespace(pid=pid, usedGpuMemory=mem, gpuInstanceId=0xFFFFFFFF,
                                computeInstanceId=0xFFFFFFFF) for pid, mem in gpu.processes]

    # every minute
    def nvmlDeviceGetTotalEccErrors(self, h: int, error_type: int, counter_type: int) -> int:
        gpu = self._gpu(h, "nvmlDeviceGetTotalEccErrors")
        if error_type == pynvml.NVML_MEMORY_ERROR_TYPE_CORRECTED:
            return gpu.ecc_corrected
        return gpu.ecc_uncorrected

    def nvmlDeviceGetRemappedRows(self, h: int) -> tuple[int, int, int, int]:
        return self._gpu(h, "nvmlDeviceGetRemappedRows").remapped

    # GPM
    def nvmlGpmSampleAlloc(self) -> Any:
        self.gpm_live += 1
        return SimpleNamespace(gpu=None)

    def nvmlGpmSampleFree(self, sample: Any) -> None:
        self.gpm_live -= 1

    def nvmlGpmSampleGet(self, h: int, sample: Any) -> Any:
        self._gpu(h, "nvmlGpmSampleGet")
        sample.gpu = h
        return sample

    def nvmlGpmMetricsGet(self, mg: _GpmMetricsGet) -> _GpmMetricsGet:
        gpu = self._gpu(mg.sample2.gpu, "nvmlGpmMetricsGet")
        by_id = {pynvml.NVML_GPM_METRIC_SM_UTIL: gpu.sm_active,
                 pynvml.NVML_GPM_METRIC_ANY_TENSOR_UTIL: gpu.tensor_active}
        for m in mg.metrics[: mg.numMetrics]:
            m.value, m.nvmlReturn = by_id.get(m.metricId, 0.0), pynvml.NVML_SUCCESS
        return mg

    # events
    def nvmlEventSetCreate(self) -> queue.Queue[Any]:
        q: queue.Queue[Any] = queue.Queue()
        self._event_sets.append(q)
        return q

    def nvmlDeviceRegisterEvents(self, h: int, event_types: int, es: Any) -> None:
        self._gpu(h, "nvmlDeviceRegisterEvents")

    def nvmlEventSetWait_v2(self, es: queue.Queue[Any], timeout_ms: int) -> Any:
        try:
            return es.get(timeout=timeout_ms / 1000)
        except queue.Empty:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_TIMEOUT) from None

    def nvmlEventSetFree(self, es: queue.Queue[Any]) -> None:
        if es in self._event_sets:
            self._event_sets.remove(es)
