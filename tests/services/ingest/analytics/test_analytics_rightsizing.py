from __future__ import annotations

import pytest
from analytics_builders import T0, analytics, event, placement, window

from gpufleet.contracts import JobState, Message, RightSizingReport
from services.ingest.analytics.rightsizing import percentile, recommend


@pytest.mark.parametrize(
    ("requested", "busy", "p95", "windows", "gpus", "text"),
    [
        (8, 2, 31.0, 10, 2, "asked 8 GPUs, 2 were busy, p95 31 %: ask for 2 GPUs"),
        (8, 8, 92.0, 10, 8, "asked 8 GPUs, 8 were busy, p95 92 %: the size is right"),
        (4, 0, 1.0, 10, 1, "asked 4 GPUs, 0 were busy, p95 1 %: ask for 1 GPU"),
        (1, 1, 20.0, 10, 1, "asked 1 GPU, 1 was busy, p95 20 %: could share a GPU (ask for a "
                            "fraction)"),
        (1, 0, 2.0, 10, 1, "asked 1 GPU, 0 were busy, p95 2 %: could share a GPU (ask for a "
                           "fraction)"),
        (1, 1, 80.0, 10, 1, "asked 1 GPU, 1 was busy, p95 80 %: the size is right"),
        (2, 0, 0.0, 0, 2, "no utilization measured yet"),
    ],
)
def test_recommendation(requested: int, busy: int, p95: float, windows: int, gpus: int,
                        text: str) -> None:
    assert recommend(requested, busy, p95, windows) == (gpus, text)


@pytest.mark.parametrize(
    ("hist", "q", "expected"),
    [([0] * 101, 0.95, 0), ([10] + [0] * 100, 0.95, 0), ([5] * 20 + [0] * 81, 0.95, 18),
     ([1] * 101, 0.5, 50), ([0] * 100 + [3], 0.95, 100)],
)
def test_percentile_of_a_histogram(hist: list[int], q: float, expected: int) -> None:
    assert percentile(hist, q) == expected


def reports(msgs: list[Message]) -> list[RightSizingReport]:
    return [m for m in msgs if isinstance(m, RightSizingReport)]


def test_finished_job_gets_one_final_report_after_its_last_windows() -> None:
    a = analytics(rightsizing_every_s=3600)
    a.on_placement(placement("j1", gpus=[0, 1, 2, 3]))
    out: list[Message] = []
    for minute in range(10):
        for gpu in range(4):
            util = 60.0 if gpu == 0 else (8.0 if gpu == 1 else 0.0)
            out += a.on_window(window(minute, util, gpu=gpu, mem=float(gpu << 30),
                                      p95=util + 10))
    out += a.on_job_event(event("j1", JobState.SUCCEEDED, 10))
    assert reports(out) == []
    out += a.on_window(window(10, 0.0, job=None, gpu=0))  # the watermark at 11 min: settling
    out += a.on_window(window(11, 0.0, job=None, gpu=0))  # 12 min: 90 s after the end, settled
    out += a.on_window(window(12, 0.0, job=None, gpu=0))
    [r] = reports(out)
    assert r.final and r.job_id == "j1" and r.ts == T0 + 600 + 90
    assert (r.gpus_requested, r.gpus_seen, r.gpus_busy, r.windows) == (4, 4, 2, 40)
    assert (r.gpu_minutes, r.busy_gpu_minutes, r.util_max) == (40.0, 20.0, 60.0)
    assert r.util_p95 == 70.0 and r.mem_peak_bytes == 3 << 30
    assert r.recommendation == "asked 4 GPUs, 2 were busy, p95 70 %: ask for 2 GPUs"
    assert r.recommended_gpus == 2


def test_running_job_is_reported_every_period() -> None:
    a = analytics(rightsizing_every_s=300)
    a.on_placement(placement("j1"))
    at = [m for m in range(12) for _ in reports(a.on_window(window(m, 50.0)))]
    assert at == [4, 9]  # after 5 minutes of windows, then 5 more
    assert not any(r.final for m in range(12, 13) for r in reports(a.on_window(window(m, 50))))


def test_windows_of_unknown_jobs_make_no_report() -> None:
    a = analytics(rightsizing_every_s=60)
    assert reports(a.on_window(window(0, 50.0, job="stranger"))) == []
