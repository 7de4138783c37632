"""Start a real warehouse for tests of any service: ``start_warehouse(data_dir, port)``."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


class WarehouseNotReady(RuntimeError):
    pass


def start_warehouse(data_dir: str | Path, port: int, *, timeout_s: float = 60.0,
                    env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Run ``gpufleet warehouse serve --data DIR --port PORT`` and return once it answers
    ``/ping``. Stop it with ``stop_warehouse(proc)``. Its log goes to ``<data_dir>.log``."""
    cmd = [sys.executable, "-m", "gpufleet.cli", "warehouse", "serve", "--data", str(data_dir),
           "--port", str(port)]
    log_path = Path(f"{Path(data_dir).resolve()}.log")
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(cmd, env={**os.environ, **(env or {})},
                                stdout=subprocess.DEVNULL, stderr=log)
    try:
        wait_ready(port, timeout_s, proc, log_path)
    except BaseException:
        stop_warehouse(proc)
        raise
    return proc


def wait_ready(port: int, timeout_s: float = 60.0, proc: subprocess.Popen[bytes] | None = None,
               log_path: Path | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            err = log_path.read_text(errors="replace") if log_path else ""
            raise WarehouseNotReady(f"warehouse exited with {proc.returncode}: {err[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise WarehouseNotReady(f"warehouse on port {port} not ready after {timeout_s}s")


def stop_warehouse(proc: subprocess.Popen[bytes], timeout_s: float = 20.0) -> int:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def url(port: int, user: str = "default", password: str = "") -> str:
    return f"http://{user}:{password}@127.0.0.1:{port}/default"


def migrated(port: int) -> None:
    """Apply the migrations to the warehouse on ``port`` as the default writer."""
    from services.warehouse.migrate import connect, migrate

    migrate(connect(url(port)))
