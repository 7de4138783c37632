"""Submit -> placed -> visible in job detail, over the real broker."""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from gpufleet.bus import make_consumer
from gpufleet.contracts import CancelJob, JobState, SubmitJob, decoder_for

from .builders import make_job, make_node, snapshot
from .conftest import ADMIN, SUBMITTER_A, SUBMITTER_B, RunningApi, auth

pytestmark = pytest.mark.integration


async def _requests(api: RunningApi, n: int) -> list[SubmitJob | CancelJob]:
    consumer = make_consumer(api.bus, ["jobs.requests"], group_id=None)
    await consumer.start()
    try:
        got: list[SubmitJob | CancelJob] = []
        while len(got) < n:
            batch = await consumer.getmany(timeout_ms=10_000)
            assert batch, f"only {len(got)} of {n} requests on the topic"
            for records in batch.values():
                got += [decoder_for("jobs.requests").decode(r.value) for r in records]
        return got
    finally:
        await consumer.stop()


async def test_submit_then_placed_shows_in_job_detail(running_api: RunningApi) -> None:
    api = running_api
    response = await api.client.post("/api/v1/jobs", headers=auth(SUBMITTER_A), json={
        "job_id": "train-1", "gpus": 2, "sim_util": 80})
    assert response.status == 202, await response.text()
    [request] = await _requests(api, 1)
    assert isinstance(request, SubmitJob)
    assert (request.job.job_id, request.job.tenant, request.job.gpus) == ("train-1", "team-a", 2)

    # the scheduler's answer, published here so the test controls it exactly
    node = make_node("n1").gpus(4).busy(0, 1).util(90, 70, 0, 0)
    job = make_job("train-1").tenant("team-a").gpus(2).on("n1", 0, 1)
    await api.publish("jobs.placements", job.placement())
    await api.publish("jobs.events", job.event(JobState.QUEUED), job.event(JobState.PLACED))
    await api.publish("scheduler.state", snapshot([node], [job]))
    await api.publish("nodes", node.inventory())
    # topics are read in no fixed order between them: the node's samples count for the job once
    # the api knows where the job runs, as with a live node that samples every second
    await api.wait_for("/api/v1/jobs/train-1", lambda b: b["job"]["state"] == "placed")
    await api.publish("gpu.samples", node.sample())

    detail = await api.wait_for("/api/v1/jobs/train-1", lambda b: b["utilization"])
    assert detail["placements"][0]["node"] == "n1"
    assert detail["placements"][0]["gpus"] == [0, 1]
    assert [e["state"] for e in detail["events"]] == ["queued", "placed"]
    assert detail["util_mean"] == pytest.approx(80.0)
    listed = await (await api.get("/api/v1/jobs", tenant="team-a", state="placed")).json()
    assert [j["job_id"] for j in listed["jobs"]] == ["train-1"]


@pytest.mark.parametrize(("token", "ended"), [
    (SUBMITTER_A, JobState.SUCCEEDED),  # the same submitter
    (SUBMITTER_B, JobState.SUCCEEDED),  # another tenant's submitter
    (ADMIN, JobState.FAILED),
    (SUBMITTER_A, JobState.REJECTED),
])
async def test_the_id_of_an_ended_job_is_not_taken_again(shared_api: RunningApi, token: str,
                                                         ended: JobState) -> None:
    api = shared_api
    job_id = f"done-{token}-{ended.value}"
    first = await api.client.post("/api/v1/jobs", headers=auth(SUBMITTER_A),
                                  json={"job_id": job_id, "gpus": 2})
    assert first.status == 202, await first.text()
    job = make_job(job_id).tenant("team-a").gpus(2)
    await api.publish("jobs.events", job.event(JobState.QUEUED), job.event(ended))
    await api.wait_for(f"/api/v1/jobs/{job_id}", lambda b: b["job"]["state"] == ended.value)

    again = await api.client.post("/api/v1/jobs", headers=auth(token),
                                  json={"job_id": job_id, "gpus": 8, "tenant": "team-b"}
                                  if token != SUBMITTER_A else {"job_id": job_id, "gpus": 8})
    assert again.status == 409, await again.text()
    assert (await again.json())["field"] == "job_id"
    record = api.state.jobs[job_id]
    assert (record.tenant, record.gpus, record.state) == ("team-a", 2, ended)


async def test_concurrent_submits_of_one_id_take_it_once(running_api: RunningApi) -> None:
    api = running_api
    body = {"job_id": "twice", "tenant": "team-a"}
    responses = await asyncio.gather(*(api.client.post("/api/v1/jobs", headers=auth(ADMIN),
                                                       json=body) for _ in range(4)))
    assert sorted(r.status for r in responses) == [202, 409, 409, 409]
    [request] = await _requests(api, 1)
    assert isinstance(request, SubmitJob) and request.job.job_id == "twice"
    assert not api.state.submitting


async def test_cancel_publishes_a_cancel_request(running_api: RunningApi) -> None:
    api = running_api
    await api.client.post("/api/v1/jobs", headers=auth(ADMIN), json={
        "job_id": "j-c", "tenant": "team-a"})
    response = await api.client.post("/api/v1/jobs/j-c/cancel", headers=auth(SUBMITTER_A),
                                      json={"reason": "no longer needed"})
    assert response.status == 202, await response.text()
    submit, cancel = await _requests(api, 2)
    assert isinstance(cancel, CancelJob)
    assert (cancel.job_id, cancel.reason) == ("j-c", "no longer needed")
    assert msgspec.to_builtins(submit)["kind"] == "submit"


async def test_cluster_summary_and_nodes_from_live_topics(running_api: RunningApi) -> None:
    api = running_api
    nodes = [make_node("n1").gpus(4).busy(0, 1).util(90, 2, 0, 0),
             make_node("n2").gpus(2).model("A100").unhealthy(1).util(0, 0)]
    for n in nodes:
        await api.publish("nodes", n.inventory())
        await api.publish("gpu.samples", n.sample())
    await api.publish("scheduler.state", snapshot(nodes, [make_job("q1"), make_job("q2")]))
    summary = await api.wait_for("/api/v1/cluster", lambda b: b["gpus"] == 6
                                 and b["queue_depth"] == 2 and b["power_w"] > 0)
    assert summary["gpus_by_state"] == {"allocated": 2, "free": 3, "unhealthy": 1}
    assert summary["idle_allocated_gpus"] == 1  # gpu 1 of n1 holds a job at 2 %
    assert summary["allocated_share"] == pytest.approx(2 / 6, abs=1e-3)
    assert {m["model"]: m["gpus"] for m in summary["gpus_by_model"]} == {"A100": 2, "H100": 4}
    node = await (await api.get("/api/v1/nodes/n1")).json()
    assert [g["state"] for g in node["gpus"]] == ["allocated", "allocated", "free", "free"]
    assert node["gpus"][0]["util"] == 90
    assert (await api.get("/api/v1/nodes/nope")).status == 404

