from __future__ import annotations

import pytest
from ingest_builders import T0, make_sample

from services.ingest.windows import PartitionWindows, p95


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([], 0.0),
        ([7.0], 7.0),
        ([float(v) for v in range(1, 21)], 19.0),
        ([float(v) for v in range(1, 101)], 95.0),
        ([0.0] * 59 + [100.0], 0.0),
        ([0.0] * 57 + [100.0] * 3, 0.0),
        ([0.0] * 56 + [100.0] * 4, 100.0),
    ],
)
def test_p95_nearest_rank(values: list[float], expected: float) -> None:
    assert p95(values) == expected


def feed(pw: PartitionWindows, samples: list[tuple[float, float | None]]) -> None:
    for i, (dt, util) in enumerate(samples):
        pw.add(make_sample("n1").at(T0 + dt).gpu(0, util, energy_mj=1000 * i).build(), offset=i)


@pytest.mark.parametrize(
    ("name", "samples", "count", "mean", "lo", "hi"),
    [
        ("one", [(0, 10.0)], 1, 10.0, 10.0, 10.0),
        ("three", [(0, 10.0), (20, 20.0), (59.9, 60.0)], 3, 30.0, 10.0, 60.0),
        ("absent util counts a sample", [(0, 10.0), (1, None)], 2, 10.0, 10.0, 10.0),
        ("late within grace updates", [(0, 10.0), (70, 0.0), (30, 50.0)], 2, 30.0, 10.0, 50.0),
    ],
)
def test_first_window_aggregates(name: str, samples: list[tuple[float, float | None]],
                                 count: int, mean: float, lo: float, hi: float) -> None:
    pw = PartitionWindows(window_s=60, grace_s=30)
    feed(pw, samples)
    pw.add(make_sample("n1").at(T0 + 1000).gpu(0, 1.0).build(), offset=99)
    first = next(w for w in pw.closable() if w.window_start == T0)
    assert (first.samples, first.util_mean, first.util_min, first.util_max) == (
        count, pytest.approx(mean), lo, hi)


def test_window_stays_open_within_grace_and_closes_after() -> None:
    pw = PartitionWindows(window_s=60, grace_s=30)
    feed(pw, [(0, 10.0), (89, 10.0)])
    assert pw.closable() == []
    feed(pw, [(90, 10.0)])
    assert [w.window_start for w in pw.closable()] == [T0]


@pytest.mark.parametrize(("dt", "too_late"), [(119, 0), (70, 0), (59, 1), (0, 1)])
def test_too_late_samples_are_counted(dt: float, too_late: int) -> None:
    pw = PartitionWindows(window_s=60, grace_s=30)
    feed(pw, [(0, 10.0), (149, 10.0)])  # the watermark has passed [T0, T0+60) + grace
    pw.closable()
    ok = pw.add(make_sample("n1").at(T0 + dt).gpu(0, 1.0).build(), offset=5)
    assert pw.too_late == too_late
    assert ok is (too_late == 0)


def test_power_memory_and_energy() -> None:
    pw = PartitionWindows(window_s=60, grace_s=0)
    for i, (power, energy) in enumerate([(100_000, 5_000), (300_000, 9_000), (200_000, 12_000)]):
        pw.add(make_sample("n1").at(T0 + i).gpu(0, 50.0, power_mw=power, energy_mj=energy,
                                                mem_used_bytes=(i + 1) * 100).build(), i)
    pw.add(make_sample("n1").at(T0 + 120).gpu(0, 1.0).build(), 9)
    w = next(w for w in pw.closable() if w.window_start == T0)
    assert (w.power_mw_mean, w.mem_used_bytes_mean, w.energy_mj) == (200_000, 200, 7_000)


@pytest.mark.parametrize(("energy", "after_close"), [
    (False, (2, T0 + 30)),  # the first record of the open window [T0+60, T0+120)
    (True, (1, T0)),  # ... or the reading (T0+30) its first sample's energy is measured from
])
def test_resume_point_covers_oldest_open_window_and_energy_readings(
        energy: bool, after_close: tuple[int, float]) -> None:
    pw = PartitionWindows(window_s=60, grace_s=30)
    for i, dt in enumerate([0, 30, 65, 100]):
        e = {"energy_mj": 1000 * i} if energy else {}
        pw.add(make_sample("n1").at(T0 + dt).gpu(0, 1.0, **e).build(), offset=i)
    assert pw.resume_point() == (0, 0.0)
    pw.closable()  # closes [T0, T0+60): watermark T0+100 >= T0+90
    assert pw.resume_point() == after_close
