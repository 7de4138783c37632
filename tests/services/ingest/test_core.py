from __future__ import annotations

from ingest_builders import T0, make_event, make_sample

from gpufleet.contracts import AlertState, JobState, NodeSample
from services.ingest.core import Ingest, Params, new_sample_columns


def minutes(n: int, util: float, start: float = 0) -> list[NodeSample]:
    """One sample every 10 s on n1 gpu 0 for ``n`` minutes."""
    return [make_sample("n1").at(T0 + start + 10 * i).gpu(0, util).build() for i in range(6 * n)]


def feed(core: Ingest, samples: list[NodeSample]) -> list:
    out = []
    for i, s in enumerate(samples):
        core.add_sample("p0", s, i, new_sample_columns())
        d = core.close_windows("p0")
        out.extend(d.windows + d.alerts)
    return out


def test_windows_are_tagged_with_the_job_and_raise_idle_alerts() -> None:
    core = Ingest(Params(grace_s=0, idle_after_s=120))
    core.on_event(make_event("a").on("n1", 0).tenant("t1").at(T0 + 65).build())
    core.on_event(make_event("a").state(JobState.SUCCEEDED).at(T0 + 300).build())
    out = feed(core, minutes(7, 1.0))
    windows = [m for m in out if hasattr(m, "window_start")]
    assert [(w.window_start - T0, w.job_id) for w in windows] == [
        (0, None), (60, "a"), (120, "a"), (180, "a"), (240, "a"), (300, None)]
    alerts = [(a.state, a.ts - T0) for a in out if hasattr(a, "alert_id")]
    assert alerts == [(AlertState.FIRING, 180), (AlertState.RESOLVED, 300)]


def test_rebuilding_from_the_resume_point_gives_the_same_windows() -> None:
    samples = minutes(3, 40.0) + minutes(1, 70.0, start=180)
    whole = Ingest(Params(grace_s=15))
    first = feed(whole, samples[:14])
    point = whole.partition("p0").resume_point()
    assert point is not None
    rest = feed(whole, samples[14:])
    again = Ingest(Params(grace_s=15))
    again.partition("p0").watermark = point[1]
    for i in range(point[0], 14):
        again.add_sample("p0", samples[i], i, None)
    again.close_windows("p0", emit=False)
    assert feed_from(again, samples, 14) == rest
    assert first  # something closed before the cut, so the test cuts mid-stream


def feed_from(core: Ingest, samples: list[NodeSample], start: int) -> list:
    out = []
    for i in range(start, len(samples)):
        core.add_sample("p0", samples[i], i, new_sample_columns())
        d = core.close_windows("p0")
        out.extend(d.windows + d.alerts)
    return out
