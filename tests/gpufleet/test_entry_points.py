"""A service that cannot start because of a setting or its environment says so in one line."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from aiokafka.errors import KafkaConnectionError

from gpufleet.config import ConfigError
from gpufleet.runner import said_in_one_line


def fails(error: Exception) -> int:
    raise error


@pytest.mark.parametrize(("error", "code", "line"), [
    (ConfigError("GPUFLEET_X: Expected `int`, got `str`"), 2,
     "gpufleet svc: bad setting: GPUFLEET_X: Expected `int`, got `str`\n"),
    (KafkaConnectionError("Unable to bootstrap"), 1,
     "gpufleet svc: cannot reach Kafka (KafkaConnectionError: Unable to bootstrap); is "
     "GPUFLEET_KAFKA_BOOTSTRAP right, and is the broker up (make kafka)?\n"),
    (TimeoutError("warehouse"), 1, "gpufleet svc: the warehouse is late\n"),
])
def test_known_errors_are_one_line(error: Exception, code: int, line: str,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    known = {TimeoutError: lambda e: f"the {e} is late"}
    assert said_in_one_line("gpufleet svc", lambda: fails(error), known) == code
    assert capsys.readouterr().err == line


def test_a_bug_still_raises() -> None:
    with pytest.raises(ZeroDivisionError):
        said_in_one_line("gpufleet svc", lambda: 1 // 0)


def run_module(module: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GPUFLEET_")}
    return subprocess.run([sys.executable, "-m", module], env={**clean, **env}, text=True,
                          capture_output=True, timeout=120, check=False)


@pytest.mark.parametrize("module", ["services.scheduler", "services.ingest"])
def test_a_bad_setting_is_one_line_not_a_traceback(module: str) -> None:
    done = run_module(module, GPUFLEET_SCHEDULER_BATCH_MAX="many", GPUFLEET_INGEST_WORKERS="two")
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    name = module.split(".")[1]
    assert done.stderr.strip().splitlines()[-1].startswith(f"gpufleet {name}: bad setting: "
                                                           f"GPUFLEET_")
