"""The commands on the api: submit, jobs, cancel, status, top (against a running api)."""

from __future__ import annotations

import asyncio
import os
import pty
import signal
import sys
from pathlib import Path

import pytest

from gpufleet.cli import main
from services.api.cli import top

from .builders import make_job, make_node, snapshot
from .conftest import ADMIN, SUBMITTER_A, VIEWER, RunningApi

pytestmark = pytest.mark.integration


async def gpufleet(api: RunningApi, capsys: pytest.CaptureFixture[str], *argv: str,
                   token: str = ADMIN) -> tuple[int, str, str]:
    url = str(api.client.make_url("")).rstrip("/")
    code = await asyncio.to_thread(main, [*argv[:1], "--url", url, "--token", token, *argv[1:]])
    out, err = capsys.readouterr()
    return code, out, err


async def test_submit_list_show_cancel(shared_api: RunningApi,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = await gpufleet(shared_api, capsys, "submit", "--job-id", "cli-1", "--gpus",
                                  "2", "--sim-duration", "30", token=SUBMITTER_A)
    assert (code, out.strip()) == (0, "cli-1 submitted")
    assert shared_api.state.jobs["cli-1"].tenant == "team-a"

    code, out, _ = await gpufleet(shared_api, capsys, "jobs", "--tenant", "team-a")
    assert code == 0
    assert "cli-1" in out and "submitted" in out

    code, out, _ = await gpufleet(shared_api, capsys, "jobs", "cli-1")
    assert code == 0
    assert out.startswith("job cli-1  tenant team-a  state submitted  gpus 2")

    code, out, _ = await gpufleet(shared_api, capsys, "cancel", "cli-1", token=SUBMITTER_A)
    assert (code, out.strip()) == (0, "cli-1 cancelling")


async def test_submit_from_a_job_file(shared_api: RunningApi, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    job = tmp_path / "job.toml"
    job.write_text('job_id = "from-file"\ntenant = "team-a"\ngpus = 4\n[env]\nA = "1"\n')
    code, out, _ = await gpufleet(shared_api, capsys, "submit", "-f", str(job), "--priority", "5")
    assert out.strip() == "from-file submitted"
    assert code == 0
    record = shared_api.state.jobs["from-file"]
    assert (record.gpus, record.priority) == (4, 5)


@pytest.mark.parametrize(("argv", "token", "message"), [
    (("submit", "--gpus", "0"), ADMIN, "400"),
    (("submit", "--tenant", "team-a"), VIEWER, "403"),
    (("cancel", "no-such-job"), ADMIN, "404"),
    (("jobs", "--state", "bogus"), ADMIN, "field: state"),
])
async def test_errors_are_reported(shared_api: RunningApi, capsys: pytest.CaptureFixture[str],
                                   argv: tuple[str, ...], token: str, message: str) -> None:
    code, _, err = await gpufleet(shared_api, capsys, *argv, token=token)
    assert code == 1
    assert message in err


async def test_status_and_top_once(shared_api: RunningApi,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    node = make_node("cli-node").gpus(4).busy(0).util(88, 0, 0, 0)
    await shared_api.publish("nodes", node.inventory())
    await shared_api.publish("gpu.samples", node.sample())
    await shared_api.publish("scheduler.state", snapshot([node], [make_job("waiting-1")]))
    await shared_api.wait_for("/api/v1/cluster", lambda b: b["queue_depth"] == 1)
    code, out, _ = await gpufleet(shared_api, capsys, "status")
    assert code == 0
    assert "cluster test: 1/1 nodes, 4 GPUs" in out
    code, out, _ = await gpufleet(shared_api, capsys, "top", "--once", "--no-color")
    assert code == 0
    assert " 88*" in out and "waiting-1" in out and "QUEUE (" in out


def _summary(**kw: object) -> dict[str, object]:
    base: dict[str, object] = {
        "cluster": "c", "nodes": 1, "nodes_online": 1, "gpus": 2, "allocated_share": 0.5,
        "busy_share": 0.25, "queue_depth": 0, "running_jobs": 0, "idle_allocated_gpus": 0,
        "power_w": 1000.0, "open_alerts": 0}
    base.update(kw)
    return base


@pytest.mark.parametrize(("gpus", "expected"), [
    ([{"index": 0, "state": "free", "util": 3.0}], "  3 "),
    ([{"index": 0, "state": "allocated", "util": 97.4}], " 97*"),
    ([{"index": 0, "state": "unhealthy"}], " -- "),
    ([{"index": 0, "state": "partial", "util": 50.0}], " 50~"),
])
def test_top_cells(gpus: list[dict[str, object]], expected: str) -> None:
    text = top.render(_summary(), [{"node": "n", "model": "H100", "gpus": gpus}], [],
                      color=False)
    assert f"n             H100    {expected}" in text


async def test_top_ends_on_q_and_on_ctrl_c(shared_api: RunningApi) -> None:
    url = str(shared_api.client.make_url("")).rstrip("/")
    for stop in (b"q", signal.SIGINT):
        primary, secondary = pty.openpty()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gpufleet.cli", "top", "--url", url, "--token", ADMIN,
            "--interval", "0.2", stdin=secondary, stdout=secondary, stderr=secondary)
        os.close(secondary)
        try:
            await _read_until(primary, b"QUEUE")
            if isinstance(stop, bytes):
                os.write(primary, stop)
            else:
                proc.send_signal(stop)
            assert await asyncio.wait_for(proc.wait(), 10) == 0
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            os.close(primary)


async def _read_until(fd: int, marker: bytes, timeout: float = 20) -> bytes:
    seen = b""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while marker not in seen:
        assert loop.time() < deadline, f"no {marker!r} in {seen[-500:]!r}"
        seen += await asyncio.to_thread(os.read, fd, 65536)
    return seen


@pytest.mark.parametrize("env", ["FOO", "=1"])
def test_submit_env_must_be_name_equals_value(env: str,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    from gpufleet.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["submit", "--env", env, "--gpus", "1"])
    assert exc.value.code == 2
    assert f"{env!r} is not NAME=VALUE" in capsys.readouterr().err


@pytest.mark.parametrize(("job", "shown", "hidden"), [
    ({"state": "queued", "reason": "waiting for the next scheduling cycle"},
     ["reason: waiting for the next scheduling cycle"], ["last seen"]),
    ({"state": "started", "reason": None, "last_seen": 1.0e9},
     ["last seen "], ["reason"]),
])
def test_job_detail_shows_the_reason_while_it_applies_and_the_last_heartbeat(
        job: dict[str, object], shown: list[str], hidden: list[str]) -> None:
    from services.api.cli.jobs import render_detail

    body = {"job": {"job_id": "j", "tenant": "t", "gpus": 1, "node": "n", **job},
            "placements": [], "events": [], "util_mean": None, "utilization": []}
    text = render_detail(body)
    assert all(s in text for s in shown) and not any(h in text for h in hidden), text
