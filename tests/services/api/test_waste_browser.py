"""The dashboard's waste views in headless Chromium: a tenant's page (allocated against busy,
what was reclaimed, what to give back), a job's waste panel, a drained GPU on the heat map."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import msgspec
import pytest

from gpufleet.config import BusSettings
from gpufleet.contracts import DrainCause, GpuDrain, JobState
from gpufleet.topics import create_topics

from .builders import make_job, make_node
from .conftest import start_api
from .test_dashboard_browser import CHROMIUM, SCREENSHOT_DIR, chromium
from .test_waste_api import T0, store

pytestmark = pytest.mark.integration


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed "
                    "(apt-get install -y chromium) so the dashboard cannot be loaded")
async def test_waste_views(kafka_bootstrap: str, warehouse_url: str, tmp_path: Path) -> None:
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    bus = BusSettings(kafka_bootstrap=kafka_bootstrap, topic_prefix=f"u{uuid.uuid4().hex[:10]}",
                      cluster="waste-ui")
    await create_topics(bus, replication_factor=1, partitions=1)
    await store(warehouse_url, tenant, bus.cluster)
    async with start_api(bus, api_tokens="", api_open_reads=True,
                         clickhouse_url=warehouse_url) as api:
        node = make_node("n1").gpus(4).util(80, 1, 0, 0)
        await api.publish("nodes", node.inventory())
        await api.publish("gpu.samples", node.sample())
        job = make_job(f"{tenant}-a").tenant(tenant).gpus(2).on("n1", 0, 1)
        await api.publish("jobs.events",
                          msgspec.structs.replace(job.event(JobState.PLACED), ts=T0 - 60))
        await api.publish("gpu.drains", GpuDrain(cluster=bus.cluster, node="n1", gpu=3,
                                                 cause=DrainCause.XID, reason="XID 79",
                                                 since=T0))
        await api.wait_for("/api/v1/nodes", lambda b: any(
            g.get("drain") for n in b["nodes"] for g in n["gpus"]))
        await api.wait_for(f"/api/v1/jobs/{tenant}-a", lambda b: b["usage"] is not None)
        url = str(api.client.make_url("/"))

        fleet = await chromium("--virtual-time-budget=5000", "--dump-dom", url,
                               user_data=tmp_path / "p1")
        drains = re.findall(r'class="gpu-cell"[^>]*data-drain="(\w*)"', fleet)
        assert drains == ["", "", "", "xid"], "the drained GPU is marked on the heat map"

        page = await chromium("--virtual-time-budget=5000", "--dump-dom",
                              f"{url}#/waste/{tenant}", user_data=tmp_path / "p2")
        assert re.search(r'data-metric="busy share"><div class="v">40.0 %', page), page[:3000]
        assert re.search(r'data-metric="jobs reclaimed"><div class="v">1<', page)
        chart = page.split('id="waste-chart"', 1)[1].split("</svg>", 1)[0]
        assert 'class="allocated"' in chart and 'class="busy"' in chart
        assert f"{tenant}-b" in page.split('id="waste-reclaims"', 1)[1].split("</table>", 1)[0]
        assert "ask for 1 GPU" in page.split('id="waste-jobs"', 1)[1].split("</table>", 1)[0]

        job_page = await chromium("--virtual-time-budget=5000", "--dump-dom",
                                  f"{url}#/job/{tenant}-a", user_data=tmp_path / "p3")
        gpus = job_page.split('id="job-gpus"', 1)[1].split("</table>", 1)[0]
        assert "n1/0" in gpus and "n1/1" in gpus and "80 %" in gpus
        assert "ask for 1 GPU" in job_page.split('id="job-waste-facts"', 1)[1]
        assert 'class="busy"' in job_page.split('id="job-waste-chart"', 1)[1]

        SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
        shot = SCREENSHOT_DIR / "waste.png"
        await chromium("--virtual-time-budget=5000", f"--screenshot={shot.resolve()}",
                       "--window-size=1400,900", f"{url}#/waste/{tenant}",
                       user_data=tmp_path / "p4")
        assert shot.stat().st_size > 10_000
        await chromium("--virtual-time-budget=5000", f"--screenshot={SCREENSHOT_DIR.resolve()}"
                       "/job-waste.png", "--window-size=1400,1300", f"{url}#/job/{tenant}-a",
                       user_data=tmp_path / "p5")
