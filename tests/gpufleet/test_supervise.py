"""The supervisor: restarts with backoff, holds on purpose, stops newest first, one at a time."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

import pytest

from gpufleet.supervise import Backoff, Service, Supervisor


@pytest.mark.parametrize(
    ("quick_exits", "wait"),
    [(0, 0.0), (1, 1.0), (2, 2.0), (3, 4.0), (5, 16.0), (6, 30.0), (1000, 30.0)],
)
def test_backoff_doubles_up_to_its_cap(quick_exits: int, wait: float) -> None:
    assert Backoff(first=1.0, cap=30.0).delay(quick_exits) == wait


# A child that notes when it got SIGTERM and when it finished stopping (after a short flush).
CHILD = """
import signal, sys, time
name, log = sys.argv[1], sys.argv[2]
def note(what):
    with open(log, "a") as f:
        f.write(f"{time.monotonic():.4f} {name} {what}\\n")
def term(*_):
    note("term")
    time.sleep(0.3)
    note("done")
    sys.exit(0)
signal.signal(signal.SIGTERM, term)
note("up")
while True:
    time.sleep(0.05)
"""


def _service(name: str, log: Path) -> Service:
    return Service(name, (sys.executable, "-c", CHILD, name, str(log)), stop_grace_s=10)


def _wait(predicate: object, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _lines(log: Path) -> list[tuple[str, str]]:
    if not log.exists():
        return []
    return [(p[1], p[2]) for p in (line.split() for line in log.read_text().splitlines())]


def test_a_killed_child_is_restarted_with_one_line(tmp_path: Path) -> None:
    log, said = tmp_path / "log", []
    sup = Supervisor({}, Backoff(first=0.2), say=said.append)
    child = sup.start(_service("ingest", log))
    _wait(lambda: ("ingest", "up") in _lines(log))
    first = child.proc.pid if child.proc else 0
    sup.send("ingest", signal.SIGKILL)
    _wait(lambda: (sup.poll(), child.restarts == 1)[1])
    _wait(lambda: _lines(log).count(("ingest", "up")) == 2)
    assert child.proc is not None and child.proc.pid != first
    assert said[0].startswith("ingest: exited with SIGKILL") and "restarting in 0s" in said[0]
    assert said[1].startswith("ingest: restarted (pid ")
    sup.stop_all()


def test_quick_exits_back_off_longer_each_time(tmp_path: Path) -> None:
    said: list[str] = []
    now = [0.0]
    sup = Supervisor({}, Backoff(first=1.0, stable_s=30), say=said.append, clock=lambda: now[0])
    child = sup.start(Service("bad", (sys.executable, "-c", "raise SystemExit(3)")))
    waits = []
    for _ in range(3):
        assert child.proc is not None
        child.proc.wait(10)
        sup.poll()  # notices the exit
        assert child.restart_at is not None
        waits.append(child.restart_at - now[0])
        now[0] = child.restart_at
        sup.poll()  # restarts it
    assert waits == [1.0, 2.0, 4.0]
    assert "exited with status 3" in said[0]
    sup.hold("bad")


def test_a_held_child_stays_down_until_released(tmp_path: Path) -> None:
    log = tmp_path / "log"
    sup = Supervisor({}, Backoff(first=0.0), say=lambda _: None)
    sup.start(_service("warehouse", log))
    _wait(lambda: ("warehouse", "up") in _lines(log))
    sup.hold("warehouse")
    for _ in range(5):
        sup.poll()
        time.sleep(0.05)
    assert not sup.alive("warehouse")
    sup.release("warehouse")
    _wait(lambda: _lines(log).count(("warehouse", "up")) == 2)
    assert sup.alive("warehouse")
    sup.stop_all()


def test_stop_goes_newest_first_each_child_finished_before_the_next(tmp_path: Path) -> None:
    log = tmp_path / "log"
    sup = Supervisor({}, say=lambda _: None)
    names = ["warehouse", "ingest", "scheduler", "fleet", "api"]
    for name in names:
        sup.start(_service(name, log))
    _wait(lambda: sum(1 for _, what in _lines(log) if what == "up") == len(names))
    assert sup.stop_all() == names[::-1]
    events = [(n, w) for n, w in _lines(log) if w != "up"]
    expected = [(n, w) for n in reversed(names) for w in ("term", "done")]
    assert events == expected, "each child got SIGTERM only after the one before had finished"
