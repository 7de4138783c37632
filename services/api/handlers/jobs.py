"""Jobs: submit and cancel (requests on the bus), list and detail (from the live state)."""

from __future__ import annotations

import asyncio
import math
import uuid

from aiohttp import web
from aiokafka.errors import KafkaError

from gpufleet.bus import publish
from gpufleet.contracts import TERMINAL_STATES, CancelJob, JobSpec, SubmitJob, share_problem
from services.api import core
from services.api.auth import Role
from services.api.handlers import waste
from services.api.handling import (
    METRICS,
    PRODUCER,
    SETTINGS,
    STATE,
    Route,
    error,
    json,
    principal,
    read_body,
    read_query,
    unavailable,
)
from services.api.schemas import (
    Accepted,
    CancelRequest,
    JobDetail,
    JobList,
    JobsQuery,
    SubmitRequest,
)


async def list_jobs(request: web.Request) -> web.Response:
    q = read_query(request, JobsQuery)
    return json(core.list_jobs(
        request.app[STATE], tenant=q.tenant, states={q.state} if q.state else None,
        since=q.since, until=q.until, offset=q.offset, limit=q.limit))


async def get_job(request: web.Request) -> web.Response:
    record = request.app[STATE].jobs.get(request.match_info["job_id"])
    if record is None:
        raise error(404, f"no job {request.match_info['job_id']!r}")
    return json(await waste.job_detail(request, record))


def spec_of(body: SubmitRequest, tenant: str) -> JobSpec:
    return JobSpec(
        job_id=body.job_id or f"{tenant}-{uuid.uuid4().hex[:12]}", tenant=tenant,
        queue=body.queue, priority=body.priority, gpus=body.gpus, gpu_milli=body.gpu_milli,
        gpu_models=list(body.gpu_models), cpu_milli=body.cpu_milli, memory_mib=body.memory_mib,
        gang=body.gang, est_runtime_s=body.est_runtime_s, command=body.command,
        env=dict(body.env), sim_duration_s=body.sim_duration_s, sim_util=body.sim_util)


async def _send(request: web.Request, msg: SubmitJob | CancelJob) -> None:
    """Put the request on the bus, or answer 503 (``Retry-After``) when the broker does not
    confirm it within ``api_publish_timeout_s``: it may be away, or its partition leaderless."""
    settings, metrics = request.app[SETTINGS], request.app[METRICS]
    kind = type(msg).__name__
    try:
        async with asyncio.timeout(settings.api_publish_timeout_s):
            await publish(request.app[PRODUCER], settings, "jobs.requests", msg)
    except (KafkaError, TimeoutError) as e:
        metrics.inc("api_bus_unavailable_total", help="requests answered 503: the bus was away",
                    kind=kind)
        what = f"job {msg.job.job_id!r}" if isinstance(msg, SubmitJob) else "the cancel"
        raise unavailable(
            f"the job bus did not confirm {what} ({type(e).__name__}); retry later (with the "
            "same job_id: a job id is taken once)",
            math.ceil(settings.api_retry_after_s)) from None
    metrics.inc("api_messages_out_total", help="requests put on the bus",
                topic="jobs.requests", kind=kind)


async def submit(request: web.Request) -> web.Response:
    body = await read_body(request, SubmitRequest)
    who = principal(request)
    tenant = body.tenant or who.tenant or "default"
    if not who.may_act_for(tenant):
        raise error(403, f"may not submit for tenant {tenant!r}", "tenant")
    share = share_problem(body.gpus, body.gpu_milli)
    if share is not None:
        raise error(400, share, "gpu_milli")
    state = request.app[STATE]
    msg = SubmitJob(job=spec_of(body, tenant))
    job_id = msg.job.job_id
    if state.knows(job_id):  # the scheduler never accepts an id twice, even of an ended job
        existing = state.jobs.get(job_id)
        now = existing.state.value if existing is not None else "being submitted"
        raise error(409, f"job {job_id!r} exists and is {now}; job ids are never reused",
                    "job_id")
    state.submitting.add(job_id)  # taken before the await: a concurrent submit gets 409
    try:
        await _send(request, msg)
    finally:
        state.submitting.discard(job_id)  # sent: the state holds it below; failed: free again
    state.apply(msg)
    return json(Accepted(job_id=job_id, state="submitted"), status=202)


async def cancel(request: web.Request) -> web.Response:
    body = await read_body(request, CancelRequest)
    job_id = request.match_info["job_id"]
    record = request.app[STATE].jobs.get(job_id)
    if record is None:
        raise error(404, f"no job {job_id!r}")
    if not principal(request).may_act_for(record.tenant):
        raise error(403, f"may not cancel jobs of tenant {record.tenant!r}")
    if record.state in TERMINAL_STATES:
        raise error(409, f"job {job_id!r} already {record.state.value}")
    await _send(request, CancelJob(job_id=job_id, reason=body.reason))
    return json(Accepted(job_id=job_id, state="cancelling"), status=202)


ROUTES = [
    Route("GET", "/api/v1/jobs", list_jobs, "Jobs, newest first, filtered and paged",
          query=JobsQuery, response=JobList, tag="jobs"),
    Route("POST", "/api/v1/jobs", submit, "Submit a job (a request on jobs.requests)",
          role=Role.SUBMITTER, body=SubmitRequest, response=Accepted, status=202,
          errors=(400, 401, 403, 409, 413, 503), tag="jobs"),
    Route("GET", "/api/v1/jobs/{job_id}", get_job,
          "One job: its events, placement and utilization so far; its measured usage per GPU "
          "and right-sizing recommendation; its idle warnings and reclaims", response=JobDetail,
          errors=(401, 403, 404), tag="jobs"),
    Route("POST", "/api/v1/jobs/{job_id}/cancel", cancel, "Cancel a job",
          role=Role.SUBMITTER, body=CancelRequest, response=Accepted, status=202,
          errors=(400, 401, 403, 404, 409, 413, 503), tag="jobs"),
]
