"""The dashboard in headless Chromium: served by a running api with live data, it shows the
heat map with one cell per GPU and the queue; a screenshot is saved for people to look at."""

from __future__ import annotations

import asyncio
import math
import os
import re
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path

import clickhouse_connect
import pytest

from gpufleet.config import BusSettings
from gpufleet.contracts import JobState
from services.scheduler.core import WAITING

from .builders import make_job, make_node, snapshot
from .conftest import RunningApi, start_api
from .test_history import COLUMNS

pytestmark = pytest.mark.integration
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SCREENSHOT_DIR = Path(os.environ.get("GPUFLEET_SCREENSHOTS", ".cache/screenshots"))


async def chromium(*args: str, user_data: Path, timeout: float = 60) -> str:
    assert CHROMIUM is not None
    proc = await asyncio.create_subprocess_exec(
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--no-first-run", "--hide-scrollbars", f"--user-data-dir={user_data}", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode == 0, f"chromium exited {proc.returncode}"
    return out.decode()


async def _publish_fleet(api: RunningApi) -> None:
    nodes = [make_node(f"node-{i:02d}").gpus(8).busy(*range(i % 9)).util(
        *[(i * 13 + g * 11) % 100 for g in range(8)]) for i in range(6)]
    nodes.append(make_node("node-a100").gpus(4).model("A100").unhealthy(3).util(0, 5, 60, 0))
    jobs = [make_job(f"queued-{i}").tenant("team-b").gpus(2) for i in range(3)]
    jobs.append(make_job("train-7").tenant("team-a").gpus(2).on("node-01", 0))
    await api.publish("scheduler.state", snapshot(nodes, jobs))
    await api.publish("jobs.placements", jobs[-1].placement())
    now = time.time()
    # train-7's life: queued with a reason to wait, placed, started, then a heartbeat every 10 s
    for state, reason, ts in [(JobState.QUEUED, WAITING, now - 130),
                              (JobState.PLACED, None, now - 125),
                              (JobState.STARTED, None, now - 120),
                              *((JobState.HEARTBEAT, None, now - 120 + 10 * i)
                                for i in range(1, 12))]:
        event = jobs[-1].event(state)
        event.reason, event.ts = reason, ts
        await api.publish("jobs.events", event)
    for n in nodes:
        await api.publish("nodes", n.inventory())
    for step in range(12):  # a minute of samples: the job page draws them
        nodes[1].util(*[40 + 30 * math.sin(step / 2 + g) for g in range(8)])
        for n in nodes:
            await api.publish("gpu.samples", n.sample(ts=now - 60 + step * 5))


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed "
                    "(apt-get install -y chromium) so the dashboard cannot be loaded")
async def test_dashboard_shows_heat_map_and_queue(bus: BusSettings, warehouse_url: str,
                                                  tmp_path: Path) -> None:
    async with start_api(bus, api_tokens="", api_open_reads=True,
                         clickhouse_url=warehouse_url) as api:
        await _publish_fleet(api)
        await _old_job(api, warehouse_url)
        await api.wait_for("/api/v1/cluster", lambda b: b["gpus"] == 52 and b["queue_depth"] == 3)
        url = str(api.client.make_url("/"))
        dom = await chromium("--virtual-time-budget=5000", "--dump-dom", url,
                             user_data=tmp_path / "profile")
        cells = re.findall(r'class="gpu-cell"[^>]*data-state="(\w+)"', dom)
        assert len(cells) == 6 * 8 + 4, "one heat map cell per GPU"
        assert cells.count("unhealthy") == 1
        queue = dom.split('id="queue"', 1)[1].split("</table>", 1)[0]
        assert all(f"queued-{i}" in queue for i in range(3))
        assert "train-7" in dom.split('id="running"', 1)[1]

        SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
        shot = SCREENSHOT_DIR / "dashboard.png"
        await chromium("--virtual-time-budget=5000", f"--screenshot={shot.resolve()}",
                       "--window-size=1400,1000", url, user_data=tmp_path / "profile2")
        assert shot.stat().st_size > 10_000

        job_dom = await chromium("--virtual-time-budget=5000", "--dump-dom", url + "#/job/train-7",
                                 user_data=tmp_path / "profile3")
        chart = job_dom.split('id="job-chart"', 1)[1].split("</svg>", 1)[0]
        assert 'class="line"' in chart, "the job page draws its utilization"
        facts = job_dom.split('id="job-facts"', 1)[1].split("</dl>", 1)[0]
        assert '<dd data-fact="state">started</dd>' in facts
        assert WAITING not in facts and 'data-fact="reason"' not in facts, \
            "a started job shows no reason to wait"
        assert 'data-fact="last seen"' in facts, "heartbeats fold into the last-seen time"
        events = job_dom.split('id="job-events"', 1)[1].split("</table>", 1)[0]
        assert "<th>GPU indices</th>" in events and "<th>GPUs</th>" not in events
        listed = re.findall(r"<tr><td>[^<]*</td><td>(\w+)</td>", events)
        assert listed == ["queued", "placed", "started"], "one row per change, no heartbeats"
        await chromium("--virtual-time-budget=5000", f"--screenshot={SCREENSHOT_DIR.resolve()}"
                       "/job.png", "--window-size=1400,900", url + "#/job/train-7",
                       user_data=tmp_path / "profile4")

        # a job the api never saw running: its chart comes from the warehouse
        old_dom = await chromium("--virtual-time-budget=5000", "--dump-dom", url + "#/job/old-job",
                                 user_data=tmp_path / "profile5")
        assert "warehouse, per 1 min" in old_dom
        assert 'class="line"' in old_dom.split('id="job-chart"', 1)[1].split("</svg>", 1)[0]


async def _old_job(api: RunningApi, warehouse_url: str) -> None:
    start = int(time.time()) // 60 * 60 - 1800
    rows = [["test", "node-00", 0, "GPU-node-00-0", datetime.fromtimestamp(start + m * 60, UTC),
             60, 60, u, u, u, u, 0.0, 0.0, 0, "old-job", "team-a"]
            for m in range(20) for u in [50 + 40 * math.sin(m / 3)]]
    client = clickhouse_connect.get_client(dsn=warehouse_url)
    try:
        client.insert("gpu_util_1m", rows, column_names=COLUMNS)
    finally:
        client.close()
    for state, ts in ((JobState.QUEUED, start - 60), (JobState.SUCCEEDED, start + 1200)):
        event = make_job("old-job").tenant("team-a").event(state)
        event.ts = ts
        await api.publish("jobs.events", event)
