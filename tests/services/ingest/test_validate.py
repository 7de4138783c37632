from __future__ import annotations

import pytest
from ingest_builders import T0, make_event, make_sample

from gpufleet.contracts import JobEvent, NodeSample
from services.ingest.validate import event_reason, sample_reason

NOW = T0 + 3600


@pytest.mark.parametrize(
    ("name", "msg", "reason"),
    [
        ("good", make_sample().at(NOW - 5).gpu(0).gpu(1).build(), None),
        ("far future", make_sample().at(NOW + 3600).gpu(0).build(), "in the future"),
        ("slightly ahead is fine", make_sample().at(NOW + 60).gpu(0).build(), None),
        ("before 2000", make_sample().at(100.0).gpu(0).build(), "before 2000"),
        ("duplicate gpu", make_sample().at(NOW).gpu(0).gpu(0).build(), "appears twice"),
        ("hot", make_sample().at(NOW).gpu(0, temp_c=400).build(), "temperature"),
        ("power", make_sample().at(NOW).gpu(0, power_mw=9_000_000).build(), "power"),
    ],
)
def test_sample_reasons(name: str, msg: NodeSample, reason: str | None) -> None:
    got = sample_reason(msg, NOW, 300)
    assert (got is None) if reason is None else (got is not None and reason in got)


@pytest.mark.parametrize(
    ("name", "ev", "reason"),
    [
        ("good", make_event("j").on("n1", 0).at(NOW).build(), None),
        ("future", make_event("j").at(NOW + 10_000).build(), "in the future"),
        ("gpus without node", JobEvent(job_id="j", state="started", gpus=[0], ts=NOW),
         "without a node"),
        ("milli", JobEvent(job_id="j", state="started", gpu_milli=5000, ts=NOW), "gpu_milli"),
    ],
)
def test_event_reasons(name: str, ev: JobEvent, reason: str | None) -> None:
    got = event_reason(ev, NOW, 300)
    assert (got is None) if reason is None else (got is not None and reason in got)
