"""`gpufleet up` on ports of its own (--base-port: its own broker included): a child killed
with SIGKILL comes back, and Ctrl-C stops the children newest first, then the broker."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gpufleet.admin import up_ports
from gpufleet.localkafka import free_port_block, port_open

pytestmark = pytest.mark.integration


def _wait_for(log: Path, pattern: str, proc: subprocess.Popen[bytes], timeout: float = 120.0
              ) -> re.Match[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = re.search(pattern, log.read_text())
        if found:
            return found
        assert proc.poll() is None, f"gpufleet up exited:\n{log.read_text()[-3000:]}"
        time.sleep(0.3)
    raise AssertionError(f"never saw {pattern!r}:\n{log.read_text()[-3000:]}")


def test_up_moves_its_ports_restarts_a_killed_child_and_stops_in_order(tmp_path: Path) -> None:
    base = free_port_block(up_ports.BLOCK)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPUFLEET_")}
    env.update(PYTHONUNBUFFERED="1", GPUFLEET_CACHE=os.environ.get(
        "GPUFLEET_CACHE", str(Path(__file__).resolve().parents[2] / ".cache")))
    log = tmp_path / "up.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gpufleet.cli", "up", "--base-port", str(base),
             "--data", str(tmp_path / "stack"), "--restart-backoff", "0.5",
             "--only", "warehouse", "migrate", "ingest", "scheduler"],
            env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_for(log, "all started", proc)
        text = log.read_text()
        assert f"kafka: started on localhost:{base}" in text
        assert port_open(base) and port_open(base + 2), "broker and warehouse on the moved ports"
        pid = int(_wait_for(log, r"ingest: started \(pid (\d+)\)", proc)[1])
        os.kill(pid, signal.SIGKILL)
        _wait_for(log, r"ingest: exited with SIGKILL after \d+s; restarting in 0s \(restart 1\)",
                  proc)
        again = int(_wait_for(log, r"ingest: restarted \(pid (\d+)\)", proc)[1])
        assert again != pid
        time.sleep(1.0)
        assert proc.poll() is None, "the stack stays up"
        os.kill(again, 0)  # the new one lives
        proc.send_signal(signal.SIGINT)
        assert proc.wait(90) == 0, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stops = re.findall(r"^(\w+): stopped$", log.read_text(), re.MULTILINE)
    assert stops == ["scheduler", "ingest", "warehouse", "kafka"]
    assert not port_open(base), "the broker is gone"
