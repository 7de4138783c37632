from __future__ import annotations

import argparse
import os
import subprocess
from pathlib import Path

import pytest

from gpufleet.contracts import JobState
from services.ingest.publish_cmd import add_arguments, event_from

ROOT = Path(__file__).resolve().parents[3]
SLURM = ROOT / "deploy" / "integrations" / "slurm"


def parse(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    add_arguments(p)
    return p.parse_args(argv)


@pytest.mark.parametrize(
    ("argv", "stdin", "expected"),
    [
        (("--job", "j1", "--state", "started", "--node", "n1", "--gpus", "0,3"), "",
         {"job_id": "j1", "state": JobState.STARTED, "node": "n1", "gpus": [0, 3],
          "source": "external"}),
        (("--job", "j1", "--state", "failed", "--exit-code", "2", "--ts", "1700000000"), "",
         {"state": JobState.FAILED, "exit_code": 2, "ts": 1_700_000_000.0}),
        (("--json", "-"), '{"job_id": "j2", "state": "succeeded", "source": "k8s"}',
         {"job_id": "j2", "state": JobState.SUCCEEDED, "source": "k8s"}),
    ],
)
def test_event_from_flags_or_json(argv: tuple[str, ...], stdin: str,
                                  expected: dict[str, object]) -> None:
    ev = event_from(parse(*argv), stdin)
    assert {k: getattr(ev, k) for k in expected} == expected


@pytest.mark.parametrize(
    ("argv", "stdin", "message"),
    [
        (("--job", "j1"), "", "give --job and --state"),
        (("--job", "j1", "--state", "started", "--gpus", "a,b"), "", "integers"),
        (("--json", "-"), '{"job_id": "j"}', "not a job event"),
        (("--json", '{"job_id": "j", "state": "dancing"}'), "", "not a job event"),
    ],
)
def test_bad_input_says_what_is_wrong(argv: tuple[str, ...], stdin: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        event_from(parse(*argv), stdin)


@pytest.mark.parametrize(
    ("script", "env", "expected"),
    [
        ("prolog.sh", {"SLURM_JOB_GPUS": "2,3", "SLURM_JOB_ACCOUNT": "physics"},
         "--job slurm-77 --state started --node gpu-07 --source slurm --tenant physics "
         "--gpus 2,3"),
        ("epilog.sh", {"SLURM_JOB_USER": "ana"},
         "--job slurm-77 --state succeeded --node gpu-07 --source slurm --tenant ana"),
        ("epilog.sh", {"SLURM_JOB_EXIT_CODE": "1"},
         "--job slurm-77 --state failed --node gpu-07 --source slurm --tenant default "
         "--reason exit 1"),
    ],
)
def test_slurm_scripts_publish_the_job_and_its_gpus(tmp_path: Path, script: str,
                                                    env: dict[str, str], expected: str) -> None:
    seen = tmp_path / "args"
    fake = tmp_path / "gpufleet"
    fake.write_text(f'#!/bin/sh\nshift\necho "$@" > {seen}\n')
    fake.chmod(0o755)
    run_env = {"PATH": f"{tmp_path}:{os.environ['PATH']}", "SLURM_JOB_ID": "77",
               "SLURMD_NODENAME": "gpu-07", **env}
    done = subprocess.run(["sh", str(SLURM / script)], env=run_env, capture_output=True)
    assert done.returncode == 0
    assert seen.read_text().strip() == expected
