"""The NVML source against the real driver (``make test-gpu``); skipped where there is no GPU."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pynvml
import pytest

from gpufleet.contracts import NodeSample, decoder_for, encode
from services.telemetry.node import NodeTelemetry
from services.telemetry.sources import Due
from services.telemetry.sources.nvml import NvmlSource

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def source() -> Iterator[NvmlSource]:
    try:
        pynvml.nvmlInit()
        count = pynvml.nvmlDeviceGetCount()
        pynvml.nvmlShutdown()
    except pynvml.NVMLError as e:
        pytest.skip(f"no NVIDIA GPU here: {e}")
    if not count:
        pytest.skip("NVML runs but sees no GPU")
    src = NvmlSource()
    yield src
    src.close()


def test_identity_of_every_gpu(source: NvmlSource) -> None:
    ident = source.identity()
    assert ident.gpus and ident.driver_version
    for i, g in enumerate(ident.gpus):
        assert g.index == i and g.uuid.startswith(("GPU-", "MIG-")) and g.model
        assert g.memory_total_bytes > 0


def test_samples_of_every_gpu_decode_and_make_sense(source: NvmlSource) -> None:
    source.read(time.time(), Due(processes=True, health=True))
    time.sleep(0.2)
    reading = source.read(time.time(), Due(processes=True, health=True))
    for s in reading.gpus:
        assert s.util_gpu is not None and 0 <= s.util_gpu <= 100
        assert s.mem_used_bytes is not None and s.mem_free_bytes is not None
        assert s.temp_c is None or 0 < s.temp_c < 120
        assert s.power_mw is None or s.power_mw > 0
        assert s.processes is not None
    msg = NodeSample(cluster="gpu", node="here", gpus=reading.gpus)
    assert decoder_for("gpu.samples").decode(encode(msg)) == msg
    print(encode(msg).decode())


def test_ticks_keep_going(source: NvmlSource) -> None:
    node = NodeTelemetry("gpu", "here", source)
    seqs = [node.tick(time.time()).sample.seq for _ in range(5)]
    assert seqs == [1, 2, 3, 4, 5]
