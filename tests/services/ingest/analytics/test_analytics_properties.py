"""Properties of the analytics core over random inputs: a job that keeps a GPU busy every
minute is never warned or reclaimed; an idle one always is, on time; replayed inputs change
nothing."""

from __future__ import annotations

from analytics_builders import analytics, placement, window
from hypothesis import given, settings
from hypothesis import strategies as st

from gpufleet.contracts import Message, ReclaimRequest, ReclaimWarning

# per minute, the utilization of the job's 3 GPUs
MINUTES = st.lists(st.tuples(*(st.floats(0, 100) for _ in range(3))), min_size=1, max_size=40)


def feed(minutes: list[tuple[float, ...]]) -> tuple[list[Message], list[Message]]:
    """Decisions over the windows, and over the same windows read again."""
    a = analytics()
    a.on_placement(placement(gpus=[0, 1, 2]))
    first = [m for i, utils in enumerate(minutes) for g, u in enumerate(utils)
             for m in a.on_window(window(i, u, gpu=g))]
    again = [m for i, utils in enumerate(minutes) for g, u in enumerate(utils)
             for m in a.on_window(window(i, u, gpu=g))]
    return first, again


BUSY_MINUTES = st.lists(st.tuples(st.tuples(*(st.floats(0, 100) for _ in range(3))),
                                  st.integers(0, 2), st.floats(5, 100)), min_size=1, max_size=40)


@settings(max_examples=150, deadline=None)
@given(BUSY_MINUTES)
def test_a_job_with_a_busy_gpu_every_minute_is_never_reclaimed(
        minutes: list[tuple[tuple[float, ...], int, float]]) -> None:
    busy = [tuple(hot if g == which else u for g, u in enumerate(utils))
            for utils, which, hot in minutes]
    first, _ = feed(busy)
    assert not [m for m in first if isinstance(m, ReclaimWarning | ReclaimRequest)]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(*(st.floats(0, 4.99) for _ in range(3))), min_size=5, max_size=20))
def test_an_idle_job_is_warned_at_3_and_reclaimed_at_5_minutes(
        minutes: list[tuple[float, ...]]) -> None:
    first, _ = feed(minutes)
    kinds = [(type(m).__name__, m.ts) for m in first
             if isinstance(m, ReclaimWarning | ReclaimRequest)]
    t0 = window(0, 0).window_start
    assert kinds == [("ReclaimWarning", t0 + 180), ("ReclaimRequest", t0 + 300)]


@settings(max_examples=150, deadline=None)
@given(MINUTES)
def test_replayed_windows_decide_nothing_more(minutes: list[tuple[float, ...]]) -> None:
    _, again = feed(minutes)
    assert again == []
