"""Energy per window from NVML's cumulative counter: the growth between consecutive readings
goes to the window of the newer one."""

from __future__ import annotations

import pytest
from ingest_builders import T0, make_sample

from gpufleet.contracts import NodeSample
from services.ingest.windows import ClosedWindow, PartitionWindows

WATTS_MW = 300_000  # 300 W in mW: the counter grows 300,000 mJ per second
Reading = tuple[str, float, int | None]  # node, seconds after T0, counter (None: no counter)


def sample(node: str, dt: float, energy: int | None) -> NodeSample:
    fields = {} if energy is None else {"energy_mj": energy}
    return make_sample(node).at(T0 + dt).gpu(0, 50.0, **fields).build()


def closer(dt: float) -> NodeSample:
    """A sample of another node far enough ahead to close every window before ``dt``."""
    return sample("closer", dt, None)


def energy_by_window(pw: PartitionWindows, node: str = "n1") -> dict[float, int]:
    return {w.window_start - T0: w.energy_mj for w in pw.closable() if w.key[1] == node}


def feed(pw: PartitionWindows, readings: list[Reading], first_offset: int = 0) -> None:
    for i, (node, dt, energy) in enumerate(readings):
        pw.add(sample(node, dt, energy), offset=first_offset + i)


def steady(every_s: int, minutes: int) -> list[Reading]:
    """Steady 300 W sampled every ``every_s`` from T0 through T0 + minutes*60 inclusive."""
    return [("n1", float(t), WATTS_MW * t) for t in range(0, minutes * 60 + 1, every_s)]


@pytest.mark.parametrize("every_s", [1, 10, 30, 60])
def test_steady_power_gives_the_exact_energy_at_any_sampling(every_s: int) -> None:
    minutes = 10
    pw = PartitionWindows(window_s=60, grace_s=30)
    feed(pw, steady(every_s, minutes))
    pw.add(closer(minutes * 60 + 1000))
    windows = energy_by_window(pw)
    assert sum(windows.values()) == WATTS_MW * minutes * 60
    # the first window lacks the interval before its first sample (nothing measured it); the
    # last holds the one interval that ends on its sample; every other holds a whole minute
    assert windows[0] == WATTS_MW * (60 - every_s)
    assert windows[minutes * 60] == WATTS_MW * every_s
    assert {windows[m * 60] for m in range(1, minutes)} == {WATTS_MW * 60}


@pytest.mark.parametrize(("name", "readings", "expected"), [
    ("first sample adds 0", [("n1", 10, 5_000)], {0: 0}),
    ("consecutive", [("n1", 0, 0), ("n1", 10, 1_000), ("n1", 20, 2_000)], {0: 2_000}),
    ("interval across windows goes to the newer", [("n1", 50, 0), ("n1", 70, 2_000)],
     {0: 0, 60: 2_000}),
    ("counter reset adds 0 for that step",
     [("n1", 0, 1_000), ("n1", 10, 2_000), ("n1", 20, 500), ("n1", 30, 1_500)], {0: 2_000}),
    ("reset inside a window is not the lifetime counter",
     [("n1", 0, 10**12), ("n1", 10, 10**12 + 1_000), ("n1", 20, 0), ("n1", 30, 1_000)],
     {0: 2_000}),
    ("late sample adds 0 and does not move last back",
     [("n1", 0, 0), ("n1", 20, 2_000), ("n1", 10, 1_000), ("n1", 30, 3_000)], {0: 3_000}),
    ("late sample into an earlier window does not double count",
     [("n1", 50, 0), ("n1", 70, 2_000), ("n1", 55, 500), ("n1", 80, 3_000)],
     {0: 0, 60: 3_000}),
    ("repeated sample adds 0",
     [("n1", 0, 0), ("n1", 10, 1_000), ("n1", 10, 1_000), ("n1", 20, 2_000)], {0: 2_000}),
    ("sample without a counter leaves the last reading",
     [("n1", 0, 0), ("n1", 10, None), ("n1", 20, 2_000)], {0: 2_000}),
    ("gap over energy_gap_s adds 0",
     [("n1", 0, 0), ("n1", 10, 1_000), ("n1", 200, 90_000), ("n1", 210, 91_000)],
     {0: 1_000, 180: 1_000}),
    ("too late for its window: its energy goes to the next sample",
     [("n1", 0, 0), ("other", 95, None), ("n1", 10, 1_000), ("n1", 100, 10_000)],
     {0: 0, 60: 10_000}),
    ("other GPUs do not mix",
     [("n1", 0, 0), ("n2", 5, 10**9), ("n1", 10, 1_000), ("n2", 15, 10**9 + 7)], {0: 1_000}),
])
def test_energy_between_readings(name: str, readings: list[Reading],
                                 expected: dict[float, int]) -> None:
    pw = PartitionWindows(window_s=60, grace_s=30, energy_gap_s=120)
    feed(pw, readings)
    pw.add(closer(1000))
    assert energy_by_window(pw) == expected


def test_another_gpu_under_the_same_index_adds_0() -> None:
    pw = PartitionWindows(window_s=60, grace_s=30)
    pw.add(sample("n1", 0, 1_000))
    swapped = sample("n1", 10, 5_000)
    swapped.gpus[0].uuid = "GPU-replacement"
    pw.add(swapped)
    pw.add(sample("n1", 20, 5_500))  # the old uuid again: measured against the replacement
    pw.add(closer(1000))
    assert energy_by_window(pw) == {0: 0}


def interleaved(every_s: int, seconds: int, n1_every: int) -> list[Reading]:
    """Two nodes at steady 300 W, in time order: n2 every ``every_s`` (5 s after the tick),
    n1 every ``n1_every`` (a multiple of it)."""
    out: list[Reading] = []
    for t in range(0, seconds + 1, every_s):
        if t % n1_every == 0:
            out.append(("n1", float(t), WATTS_MW * t))
        out.append(("n2", float(t + 5), 10**9 + WATTS_MW * t))
    return out


def windows_after(pw: PartitionWindows, readings: list[Reading], first_offset: int
                  ) -> list[ClosedWindow]:
    feed(pw, readings, first_offset)
    pw.add(closer(10_000), offset=first_offset + len(readings))
    return sorted(pw.closable(), key=lambda w: (w.key, w.window_start))


@pytest.mark.parametrize(("every_s", "n1_every", "seconds", "commit_at"), [
    (10, 10, 400, 30), (10, 10, 400, 45), (30, 30, 600, 20), (60, 60, 900, 11),
    (60, 60, 900, 12), (1, 1, 200, 250),
    # n1's last reading (T0) is in a closed window and its next sample (T0+120) comes after
    # the commit: the re-read must still start at that reading
    (10, 120, 400, 12)])
def test_rebuilt_by_rereading_from_the_resume_point_gives_the_same_windows(
        every_s: int, n1_every: int, seconds: int, commit_at: int) -> None:
    """What the driver does after a restart: re-read from the committed resume point with the
    committed watermark, drop what closes on the way, go on with the records after the commit."""
    readings = interleaved(every_s, seconds, n1_every)
    before, after = readings[:commit_at], readings[commit_at:]

    old = PartitionWindows(window_s=60, grace_s=30)
    feed(old, before)
    old.closable()  # the flush before the commit
    point = old.resume_point()
    assert point is not None
    expected = windows_after(old, after, commit_at)

    new = PartitionWindows(window_s=60, grace_s=30, watermark=point[1])
    feed(new, before[point[0]:], point[0])
    new.closable()  # written by the old worker: dropped
    assert windows_after(new, after, commit_at) == expected
    assert sum(w.energy_mj for w in expected if w.key[1] == "n1") > 0


@pytest.mark.parametrize(("n2_until", "held_back"), [
    (150, True),  # n1's reading (T0) may still be measured against: re-read from it
    (210, True),  # T0+210 - window - grace - gap = T0: still usable
    (220, False),  # any sample still accepted is more than the gap after it: of no more use
])
def test_a_silent_gpu_holds_the_resume_point_back_only_while_its_reading_is_usable(
        n2_until: int, held_back: bool) -> None:
    pw = PartitionWindows(window_s=60, grace_s=30, energy_gap_s=120)
    feed(pw, [("n1", 0, 0)] + [("n2", float(t), 1_000 * t) for t in range(0, n2_until + 1, 10)])
    pw.closable()
    point = pw.resume_point()
    assert point is not None
    assert (point[0] == 0) is held_back
