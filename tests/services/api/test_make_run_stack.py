"""The whole stack as `make run` starts it (`gpufleet up`): warehouse, ingest, scheduler, a
simulated fleet, the api and the demo workload, on this test's broker and free ports. The
dashboard, loaded in headless Chromium, shows one heat-map cell per GPU and the queue; jobs get
placed and run; rows reach the warehouse; Ctrl-C stops everything cleanly."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import clickhouse_connect
import pytest

from gpufleet.localkafka import free_port

from .test_dashboard_browser import CHROMIUM, SCREENSHOT_DIR, chromium

pytestmark = pytest.mark.integration
NODES = 3


class Stack:
    def __init__(self, proc: subprocess.Popen[bytes], api: str, warehouse: str, log: Path):
        self.proc, self.api, self.warehouse, self.log = proc, api, warehouse, log

    async def get(self, path: str) -> Any:
        async with aiohttp.ClientSession() as s, s.get(self.api + path) as r:
            assert r.status == 200, await r.text()
            return await r.json()

    async def wait_for(self, path: str, predicate: Any, timeout: float = 90.0) -> Any:
        deadline = time.monotonic() + timeout
        body: Any = None
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, "the stack stopped:\n" + self.log.read_text()[-3000:]
            try:
                body = await self.get(path)
                if predicate(body):
                    return body
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.5)
        raise AssertionError(f"{path} never matched; last: {body}\n{self.log.read_text()[-3000:]}")


@pytest.fixture
async def stack(kafka_bootstrap: str, tmp_path: Path) -> AsyncIterator[Stack]:
    api_port, wh_port = free_port(), free_port()
    prefix = f"stack{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "GPUFLEET_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "GPUFLEET_TOPIC_PREFIX": prefix,
        "GPUFLEET_CLUSTER": "stack",
        "GPUFLEET_WAREHOUSE_PORT": str(wh_port),
        "GPUFLEET_WAREHOUSE_DATA": str(tmp_path / "warehouse"),
        "GPUFLEET_CLICKHOUSE_URL": f"http://default:@localhost:{wh_port}/default",
        "GPUFLEET_API_PORT": str(api_port),
        "GPUFLEET_STATE_DIR": str(tmp_path / "state"),
        "GPUFLEET_FLEET_OPS_PORT": "0",
        "GPUFLEET_INGEST_OPS_PORT": str(free_port()),
        "GPUFLEET_SCHEDULER_OPS_PORT": str(free_port()),
        "GPUFLEET_INGEST_GROUP_ID": f"{prefix}-ingest",
        "GPUFLEET_SCHEDULER_GROUP_ID": f"{prefix}-scheduler",
        "GPUFLEET_SCHEDULER_TRANSACTIONAL_ID": f"{prefix}-scheduler",
        "PYTHONUNBUFFERED": "1",
    }
    log = tmp_path / "stack.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gpufleet.cli", "up", "--nodes", str(NODES)],
            env=env, stdout=out, stderr=subprocess.STDOUT,
        )
    stack = Stack(proc, f"http://127.0.0.1:{api_port}", env["GPUFLEET_CLICKHOUSE_URL"], log)
    try:
        yield stack
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed "
                    "(apt-get install -y chromium) so the dashboard cannot be loaded")
async def test_make_run_stack_places_jobs_and_shows_them(stack: Stack, tmp_path: Path) -> None:
    gpus = NODES * 8
    await stack.wait_for("/api/v1/cluster", lambda b: b["gpus"] == gpus, timeout=120)
    # the demo workload's jobs are placed by the scheduler and run on the simulated fleet
    await stack.wait_for("/api/v1/cluster", lambda b: b["running_jobs"] > 0, timeout=120)

    dom = await chromium("--virtual-time-budget=5000", "--dump-dom", stack.api + "/",
                         user_data=tmp_path / "profile")
    cells = re.findall(r'class="gpu-cell"[^>]*data-state="(\w+)"', dom)
    assert len(cells) == gpus, "one heat-map cell per GPU"
    assert 'id="queue"' in dom
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    shot = SCREENSHOT_DIR / "stack.png"
    await chromium("--virtual-time-budget=5000", f"--screenshot={shot.resolve()}",
                   "--window-size=1400,1000", stack.api + "/", user_data=tmp_path / "profile2")
    assert shot.stat().st_size > 10_000

    # ingest writes the fleet's samples and the scheduler's placements into the warehouse
    client = clickhouse_connect.get_client(dsn=stack.warehouse)
    try:
        for sql in ("SELECT count() FROM gpu_samples", "SELECT uniqExact(job_id) FROM placements"):
            deadline = time.monotonic() + 60
            while client.query(sql).result_rows[0][0] == 0:
                assert time.monotonic() < deadline, f"nothing in the warehouse: {sql}"
                await asyncio.sleep(1)
    finally:
        client.close()

    # Ctrl-C stops every part
    stack.proc.send_signal(signal.SIGINT)
    assert stack.proc.wait(60) == 0, stack.log.read_text()[-3000:]
    text = stack.log.read_text()
    for name in ("warehouse", "ingest", "scheduler", "fleet", "api"):
        assert f"{name}: stopped" in text
