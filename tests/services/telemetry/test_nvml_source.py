"""The NVML source against the fake NVML library: samples, cadence, and every error case."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pynvml
import pytest

from gpufleet.contracts import GpuHealth, GpuSample, NodeSample, encode
from services.telemetry.fakenvml import FakeGpu, FakeNvml, fake_gpus
from services.telemetry.node import NodeTelemetry
from services.telemetry.sources import Due
from services.telemetry.sources import nvml as nvml_source
from services.telemetry.sources.nvml import NvmlSource, NvmlUnavailable

EVERYTHING = Due(processes=True, health=True)


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeNvml:
    lib = FakeNvml(fake_gpus(2))
    monkeypatch.setattr(nvml_source, "pynvml", lib)
    return lib


@pytest.fixture
def source(fake: FakeNvml) -> Iterator[NvmlSource]:
    src = NvmlSource(xid_wait_ms=20)
    yield src
    src.close()


def busy(gpu: FakeGpu) -> None:
    gpu.util, gpu.mem_util, gpu.used, gpu.power_mw, gpu.temp_c = 87, 41, 30 << 30, 612_000, 71
    gpu.processes = [(4242, 29 << 30), (4243, None)]
    gpu.ecc_corrected, gpu.remapped = 3, (0, 0, 1, 0)
    gpu.sm_active, gpu.tensor_active, gpu.clock_reasons = 78.5, 40.25, 4


def test_identity_is_read_once_with_every_field(source: NvmlSource) -> None:
    ident = source.identity()
    assert ident.driver_version == "550.54.15"
    first = ident.gpus[0]
    assert (first.uuid, first.model, first.pci_bus_id, first.mig_mode) == (
        "GPU-00000000-fake", "NVIDIA H100 80GB HBM3", "00000000:18:00.0", False)
    assert first.memory_total_bytes == 80 << 30
    assert [g.index for g in ident.gpus] == [0, 1]


def test_a_busy_gpu_reads_correctly(fake: FakeNvml, source: NvmlSource) -> None:
    busy(fake.gpus[0])
    source.read(time.time(), EVERYTHING)  # GPM needs two samples
    s = source.read(time.time(), EVERYTHING).gpus[0]
    assert (s.util_gpu, s.util_mem, s.power_mw, s.energy_mj, s.temp_c) == (
        87, 41, 612_000, 1_000_000, 71)
    assert (s.mem_used_bytes, s.mem_reserved_bytes) == (30 << 30, 512 << 20)
    assert s.mem_free_bytes == (80 << 30) - (30 << 30) - (512 << 20)
    assert (s.sm_clock_mhz, s.mem_clock_mhz, s.throttle_reasons) == (1980, 2619, 4)
    assert [(p.pid, p.used_memory_bytes) for p in s.processes or []] == [
        (4242, 29 << 30), (4243, None)]
    assert (s.ecc_volatile_corrected, s.ecc_volatile_uncorrected) == (3, 0)
    assert (s.remapped_rows_pending, s.remapped_rows_failure) == (True, False)
    assert (s.sm_active, s.tensor_active) == (78.5, 40.25)


def test_slow_groups_only_when_due(fake: FakeNvml, source: NvmlSource) -> None:
    s = source.read(time.time(), Due()).gpus[0]
    assert s.processes is None and s.ecc_volatile_corrected is None
    assert "nvmlDeviceGetTotalEccErrors" not in fake.calls


def field_unsupported(fn: str) -> Callable[[FakeGpu], None]:
    def apply(gpu: FakeGpu) -> None:
        gpu.unsupported.add(fn)
    return apply


def older_driver(fn: str) -> Callable[[FakeGpu], None]:
    def apply(gpu: FakeGpu) -> None:
        gpu.too_new.add(fn)
    return apply


def older_gpu(gpu: FakeGpu) -> None:
    gpu.arch = pynvml.NVML_DEVICE_ARCH_AMPERE


def no_processes(gpu: FakeGpu) -> None:
    gpu.processes = []


@pytest.mark.parametrize(("change", "absent", "present"), [
    (field_unsupported("nvmlDeviceGetPowerUsage"), ["power_mw"], ["energy_mj", "util_gpu"]),
    (field_unsupported("nvmlDeviceGetTotalEnergyConsumption"), ["energy_mj"], ["power_mw"]),
    (field_unsupported("nvmlDeviceGetMemoryInfo_v2"), ["mem_reserved_bytes"],
     ["mem_used_bytes", "mem_free_bytes"]),
    (field_unsupported("nvmlDeviceGetTotalEccErrors"),
     ["ecc_volatile_corrected", "ecc_volatile_uncorrected"], ["remapped_rows_pending"]),
    (field_unsupported("nvmlDeviceGetRemappedRows"), ["remapped_rows_pending"], ["temp_c"]),
    (field_unsupported("nvmlDeviceGetCurrentClocksEventReasons"), ["throttle_reasons"],
     ["sm_clock_mhz"]),
    (field_unsupported("nvmlDeviceGetComputeRunningProcesses"), ["processes"], ["util_gpu"]),
    (older_driver("nvmlDeviceGetComputeRunningProcesses"), ["processes"], ["util_gpu"]),
    (older_gpu, ["sm_active", "tensor_active"], ["util_gpu"]),
], ids=["power", "energy", "memory-v2", "ecc", "row-remap", "clock-reasons", "processes",
        "processes-old-driver", "no-gpm"])
def test_an_unsupported_field_is_absent_never_zero(
    monkeypatch: pytest.MonkeyPatch, change: Callable[[FakeGpu], None], absent: list[str],
    present: list[str],
) -> None:
    lib = FakeNvml(fake_gpus(1))
    change(lib.gpus[0])
    monkeypatch.setattr(nvml_source, "pynvml", lib)
    src = NvmlSource(xid_wait_ms=20)
    try:
        src.read(time.time(), EVERYTHING)
        reading = src.read(time.time(), EVERYTHING)
    finally:
        src.close()
    s = reading.gpus[0]
    assert reading.events == []
    for name in absent:
        assert getattr(s, name) is None, name
        assert f'"{name}"'.encode() not in encode(NodeSample(cluster="c", node="n", gpus=[s]))
    for name in present:
        assert getattr(s, name) is not None, name


def test_no_processes_is_an_empty_list_not_absent(fake: FakeNvml, source: NvmlSource) -> None:
    no_processes(fake.gpus[1])
    assert source.read(time.time(), EVERYTHING).gpus[1].processes == []


def test_mig_unsupported_is_absent(monkeypatch: pytest.MonkeyPatch) -> None:
    lib = FakeNvml([FakeGpu(mig=None)])
    monkeypatch.setattr(nvml_source, "pynvml", lib)
    src = NvmlSource(xid_wait_ms=20)
    src.close()
    assert src.identity().gpus[0].mig_mode is None


def test_a_lost_gpu_is_a_health_event_not_a_crash(fake: FakeNvml, source: NvmlSource) -> None:
    source.read(time.time(), Due())
    fake.gpus[1].lost = True
    reading = source.read(time.time(), EVERYTHING)
    assert reading.gpus[1] == GpuSample(index=1, uuid="GPU-00000001-fake")
    assert reading.gpus[0].util_gpu is not None
    [ev] = reading.events
    assert (ev.gpu, ev.health, ev.kind, ev.severity) == (1, GpuHealth.LOST, "gpu_lost", "critical")
    calls = dict(fake.calls)
    again = source.read(time.time(), EVERYTHING)
    assert again.events == []
    assert fake.calls["nvmlDeviceGetPowerUsage"] == calls["nvmlDeviceGetPowerUsage"] + 1  # GPU 0


@pytest.mark.parametrize("code", [pynvml.NVML_ERROR_UNKNOWN, pynvml.NVML_ERROR_TIMEOUT])
def test_other_nvml_errors_degrade_the_gpu_once(
    fake: FakeNvml, source: NvmlSource, code: int
) -> None:
    fake.gpus[0].errors["nvmlDeviceGetTemperature"] = code
    first = source.read(time.time(), Due())
    second = source.read(time.time(), Due())
    assert first.gpus[0].temp_c is None and first.gpus[0].power_mw is not None
    [ev] = first.events
    assert (ev.gpu, ev.health, ev.kind) == (0, GpuHealth.DEGRADED, "nvml_error")
    assert "nvmlDeviceGetTemperature" in ev.reason
    assert second.events == []


@pytest.mark.parametrize(("xid", "health"), [
    (79, GpuHealth.LOST), (48, GpuHealth.DEGRADED), (13, GpuHealth.OK)])
def test_xid_errors_arrive_from_the_event_thread(
    fake: FakeNvml, source: NvmlSource, xid: int, health: GpuHealth
) -> None:
    fake.inject_xid(1, xid)
    deadline = time.monotonic() + 5
    reading = source.read(time.time(), Due())
    while not reading.events and time.monotonic() < deadline:
        time.sleep(0.02)
        reading = source.read(time.time(), Due())
    assert reading.gpus[1].xid_errors == [xid]
    [ev] = reading.events
    assert (ev.gpu, ev.kind, ev.health, ev.reason) == (1, "xid", health, f"XID {xid}")


def test_no_driver_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    lib = FakeNvml([], init_error=pynvml.NVML_ERROR_DRIVER_NOT_LOADED)
    monkeypatch.setattr(nvml_source, "pynvml", lib)
    with pytest.raises(NvmlUnavailable, match="Driver Not Loaded"):
        NvmlSource()


def test_gpm_samples_are_freed(fake: FakeNvml) -> None:
    src = NvmlSource(xid_wait_ms=20)
    for _ in range(5):
        src.read(time.time(), Due())
    assert fake.gpm_live == 2  # one kept per GPU for the next difference
    src.close()
    assert fake.gpm_live == 0 and not fake.initialized


def test_a_lost_gpu_updates_the_inventory_and_fires_one_alert(
    fake: FakeNvml, source: NvmlSource
) -> None:
    node = NodeTelemetry("c1", "n1", source)
    assert node.tick(1.0).inventory is None
    fake.gpus[0].lost = True
    tick = node.tick(2.0)
    assert tick.inventory is not None
    gpu0 = tick.inventory.gpus[0]
    assert gpu0.health == GpuHealth.LOST and "lost" in (gpu0.health_reason or "")
    assert tick.inventory.gpus[1].health == GpuHealth.OK
    [alert] = tick.alerts
    assert (alert.kind, alert.node, alert.gpu, alert.alert_id) == (
        "gpu_lost", "n1", 0, "c1/n1/gpu0/gpu_lost")
    later = node.tick(3.0)
    assert later.inventory is None and later.alerts == []
    assert later.sample.seq == 3 and len(later.sample.gpus) == 2
