"""Child processes kept running: a child that exits is started again after a backoff (one
line says so), and a stop goes in reverse dependency order, one child at a time.

Used by ``gpufleet up`` and by the fault suite (``python -m chaos``), which also holds a child
down on purpose (``hold``/``release``) and sends it signals (``send``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

Say = Callable[[str], None]


def say_stdout(line: str) -> None:
    print(line, flush=True)


@dataclass(frozen=True)
class Backoff:
    """Wait ``first`` seconds before the first restart, twice as long after each quick exit
    (a child that ran ``stable_s`` or longer starts over), never more than ``cap``."""

    first: float = 1.0
    cap: float = 30.0
    stable_s: float = 30.0

    def delay(self, quick_exits: int) -> float:
        """The wait before restarting a child that has exited ``quick_exits`` times in a row."""
        if quick_exits <= 0:
            return 0.0
        return float(min(self.cap, self.first * 2 ** min(quick_exits - 1, 30)))


@dataclass(frozen=True)
class Service:
    name: str
    argv: tuple[str, ...]  # the full command line
    stop_grace_s: float = 30.0  # SIGTERM, then SIGKILL after this long
    log: str | None = None  # a file its output is appended to; None: the supervisor's own
    env: tuple[tuple[str, str], ...] = ()  # variables of its own, over the supervisor's


@dataclass
class Child:
    service: Service
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    quick_exits: int = 0
    restarts: int = 0
    restart_at: float | None = None  # when a dead child is due to start again
    held: bool = False  # kept down on purpose: not restarted until released
    exits: list[int] = field(default_factory=list)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None


class Supervisor:
    """Starts services, restarts the ones that exit, stops them newest first."""

    def __init__(
        self,
        env: Mapping[str, str],
        backoff: Backoff = Backoff(),
        say: Say = say_stdout,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.env = dict(env)
        self.backoff = backoff
        self.say = say
        self.clock = clock
        self.children: dict[str, Child] = {}

    # -- starting and watching -------------------------------------------------------------

    def start(self, service: Service) -> Child:
        """Start a service (registered in start order, which is its dependency order)."""
        child = self.children.setdefault(service.name, Child(service))
        self._spawn(child)
        return child

    def _spawn(self, child: Child) -> None:
        # A session of its own: a Ctrl-C on the terminal reaches only the supervisor, which
        # then stops each child with exactly one SIGTERM, in order.
        svc = child.service
        env = {**self.env, **dict(svc.env)}
        if svc.log is not None:
            with open(svc.log, "ab") as out:  # the child keeps its own handle
                child.proc = subprocess.Popen(list(svc.argv), env=env, start_new_session=True,
                                              stdout=out, stderr=subprocess.STDOUT)
        else:
            child.proc = subprocess.Popen(list(svc.argv), env=env, start_new_session=True)
        child.started_at = self.clock()
        child.restart_at = None

    def poll(self) -> None:
        """Notice children that exited and restart the ones whose backoff has passed."""
        now = self.clock()
        for name, child in self.children.items():
            if child.held or child.proc is None:
                continue
            code = child.proc.poll()
            if code is not None and child.restart_at is None:
                ran = now - child.started_at
                child.quick_exits = 1 if ran >= self.backoff.stable_s else child.quick_exits + 1
                child.exits.append(code)
                wait = self.backoff.delay(child.quick_exits)
                child.restart_at = now + wait
                self.say(f"{name}: exited with {_describe(code)} after {ran:.0f}s; "
                         f"restarting in {wait:.0f}s (restart {child.restarts + 1})")
            if child.restart_at is not None and now >= child.restart_at:
                child.restarts += 1
                self._spawn(child)
                self.say(f"{name}: restarted (pid {child.proc.pid})")

    def alive(self, name: str) -> bool:
        return self.children[name].pid is not None

    # -- faults on purpose -----------------------------------------------------------------

    def send(self, name: str, sig: int) -> int | None:
        """Send a signal to a child (it is restarted as if it had crashed); its pid, or None."""
        pid = self.children[name].pid
        if pid is not None:
            os.kill(pid, sig)
        return pid

    def hold(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Stop a child with ``sig`` and keep it down until ``release``."""
        child = self.children[name]
        child.held = True
        if child.proc is not None and child.proc.poll() is None:
            child.proc.send_signal(sig)
            _wait_or_kill(child.proc, child.service.stop_grace_s)
        child.restart_at = None

    def release(self, name: str) -> None:
        """Start a held child again now."""
        child = self.children[name]
        child.held = False
        child.quick_exits = 0
        child.restarts += 1
        self._spawn(child)
        self.say(f"{name}: started again (pid {child.proc.pid if child.proc else '?'})")

    # -- stopping --------------------------------------------------------------------------

    def stop_all(self) -> list[str]:
        """Stop every child newest first, each one fully before the next (so a consumer's
        last flush reaches a store that is still up); returns the names in stop order."""
        order: list[str] = []
        for name, child in reversed(list(self.children.items())):
            child.held = True
            if child.proc is not None and child.proc.poll() is None:
                child.proc.send_signal(signal.SIGTERM)
                if not _wait_or_kill(child.proc, child.service.stop_grace_s):
                    self.say(f"{name}: did not stop within {child.service.stop_grace_s:.0f}s; "
                             "killed")
            self.say(f"{name}: stopped")
            order.append(name)
        return order


def _wait_or_kill(proc: subprocess.Popen[bytes], grace: float) -> bool:
    """Wait for a signalled child; kill it after ``grace`` seconds. True if it stopped itself."""
    try:
        proc.wait(grace)
        return True
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return False


def _describe(code: int) -> str:
    if code < 0:
        try:
            return signal.Signals(-code).name
        except ValueError:
            return f"signal {-code}"
    return f"status {code}"


def gpufleet_argv(*args: str) -> tuple[str, ...]:
    """The command line of a ``gpufleet`` subcommand run by this Python."""
    return (sys.executable, "-m", "gpufleet.cli", *args)
