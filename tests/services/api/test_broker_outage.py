"""Integration: a broker of this test's own stopped while clients submit, then started again.

While it is away every submit is answered 202 or 503 with ``Retry-After`` and a JSON error,
never 500; ``/readyz`` says the bus is away; once it is back, submits are accepted again and a
submit refused with 503 may be sent again with its job id.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gpufleet.config import BusSettings
from gpufleet.localkafka import LocalKafka, free_port
from gpufleet.topics import create_topics

from .conftest import ADMIN, RunningApi, auth, start_api

pytestmark = pytest.mark.integration


@pytest.fixture
async def own_broker(tmp_path: Path) -> AsyncIterator[LocalKafka]:
    broker = LocalKafka(data=tmp_path / "kafka", port=free_port(), controller_port=free_port())
    await asyncio.to_thread(broker.start)
    try:
        yield broker
    finally:
        await asyncio.to_thread(broker.stop)


async def submit(api: RunningApi, job_id: str) -> tuple[int, str | None, dict[str, str]]:
    r = await api.client.post("/api/v1/jobs", headers=auth(ADMIN),
                              json={"job_id": job_id, "tenant": "t"})
    return r.status, r.headers.get("Retry-After"), await r.json()


async def ready(api: RunningApi) -> tuple[int, dict[str, bool]]:
    r = await api.client.get("/readyz")
    return r.status, (await r.json())["checks"]


async def test_submits_while_the_broker_is_away_are_503_never_500(
        own_broker: LocalKafka, warehouse_url: str) -> None:
    bus = BusSettings(kafka_bootstrap=own_broker.bootstrap,
                      topic_prefix=f"o{uuid.uuid4().hex[:10]}", cluster="test")
    await create_topics(bus, replication_factor=1, partitions=1)
    async with start_api(bus, clickhouse_url=warehouse_url, api_publish_timeout_s=2.0,
                         api_retry_after_s=3.0) as api:
        answers: list[tuple[str, int, str | None, dict[str, str]]] = []
        stopping = asyncio.Event()

        async def client() -> None:  # a steady submitter, through the whole fault
            n = 0
            while not stopping.is_set():
                n += 1
                job = f"j{n}"
                answers.append((job, *await submit(api, job)))
                await asyncio.sleep(0.1)

        submitter = asyncio.create_task(client())
        await asyncio.sleep(1.0)
        await asyncio.to_thread(own_broker.stop)
        down = time.monotonic()
        readiness_while_down = []
        while time.monotonic() - down < 8.0:
            readiness_while_down.append(await ready(api))
            await asyncio.sleep(1.0)
        await asyncio.to_thread(own_broker.start)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (answers and answers[-1][1] == 202
                                                   and (await ready(api))[0] == 200):
            await asyncio.sleep(0.5)
        stopping.set()
        await submitter

        statuses = [a[1] for a in answers]
        assert 500 not in statuses and set(statuses) <= {202, 503}, statuses
        refused = [a for a in answers if a[1] == 503]
        assert refused, f"no 503 while the broker was away: {statuses}"
        for _, _, retry_after, body in refused:
            assert retry_after == "3" and "retry later" in body["error"], body
        assert statuses[0] == 202 and statuses[-1] == 202, statuses
        assert any(s == 503 and not c["kafka"] for s, c in readiness_while_down), \
            readiness_while_down
        assert (await ready(api))[0] == 200

        # a refused submit may be sent again under its id: accepted now, or already known
        # (a request the broker took just as the answer timed out)
        for job, *_ in refused:
            status, _, body = await submit(api, job)
            assert status in (202, 409), body
