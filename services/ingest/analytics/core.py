"""The analytics over one stream of inputs: windows, inventories, placements and job events in,
decisions out (alerts, reclaims, drains, right-sizing).

The state lives in typed mappings handed in by the caller: plain dicts in tests, the faust
app's changelogged tables in the service. Every change is written back to its mapping (a
table only records what is assigned), so the state after a crash is what the changelogs hold.

Event time drives every decision: the newest window end seen (the watermark) settles ended
jobs (their last windows close after the job ends) and forgets them after the retention.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from typing import TypeVar

from msgspec import Struct, field

from gpufleet.contracts import (
    GpuUtilWindow,
    JobEvent,
    Message,
    NodeInventory,
    Placement,
)

from . import health, jobs, reclaim, rightsizing
from .health import DrainState, health_key
from .idle import IdleStreak, observe_idle
from .jobs import JobRecord
from .policy import Policies
from .reclaim import ReclaimState
from .rightsizing import UsageState


@dataclass(frozen=True, kw_only=True)
class Params:
    idle_threshold: float = 5.0  # also what counts as a busy GPU in right-sizing
    idle_after_s: float = 600.0
    policies: Policies = dataclass_field(default_factory=Policies)
    undrain_after_s: float = 900.0
    rightsizing_every_s: float = 600.0
    settle_s: float = 90.0  # a job's last windows close this long after it ends
    job_retention_s: float = 86_400.0


class Meta(Struct, kw_only=True):
    watermark: float = 0.0
    pending: dict[str, float] = field(default_factory=dict)  # ended job -> when it ended


class NodeGpus(Struct, kw_only=True):
    gpus: list[int] = field(default_factory=list)  # indices the node has reported
    last_ts: float = 0.0  # of its latest inventory; an older one is a replay


class GpuTrack(Struct, kw_only=True):
    last_start: float = -1.0  # of its latest window; an older one is a replay
    idle: IdleStreak | None = None


META = "meta"


@dataclass
class Analytics:
    params: Params
    gpus: MutableMapping[str, GpuTrack]
    jobs: MutableMapping[str, JobRecord]
    reclaims: MutableMapping[str, ReclaimState]
    usage: MutableMapping[str, UsageState]
    drains: MutableMapping[str, DrainState]
    nodes: MutableMapping[str, NodeGpus]
    meta: MutableMapping[str, Meta]

    def on_message(self, msg: object) -> list[Message]:
        match msg:
            case GpuUtilWindow():
                return self.on_window(msg)
            case NodeInventory():
                return self.on_inventory(msg)
            case Placement():
                return self.on_placement(msg)
            case JobEvent():
                return self.on_job_event(msg)
        return []

    def on_window(self, w: GpuUtilWindow) -> list[Message]:
        p = self.params
        key = health_key(w.cluster, w.node, w.gpu)
        track = self.gpus.get(key, GpuTrack())
        if w.window_start <= track.last_start:
            return []  # a replay (after a crash here or in the writer): already decided
        track.last_start = w.window_start
        out: list[Message]
        track.idle, alerts = observe_idle(track.idle, (w.cluster, w.node, w.gpu), w.window_start,
                                       w.window_s, w.util_mean, w.job_id, w.tenant,
                                       p.idle_threshold, p.idle_after_s)
        out = list(alerts)
        self.gpus[key] = track
        end = w.window_start + w.window_s
        drain = self.drains.get(key)
        if drain is not None:
            after, msgs = health.tick(drain, end, p.undrain_after_s)
            _put(self.drains, key, after)
            out += msgs
        job = self.jobs.get(w.job_id) if w.job_id is not None else None
        if job is not None and w.job_id is not None and not job.settled:
            policy = p.policies.for_job(job.queue, job.tenant)
            state, msgs = reclaim.observe(self.reclaims.get(w.job_id), job, policy, w)
            _put(self.reclaims, w.job_id, state)
            out += msgs
            usage = rightsizing.observe(self.usage.get(w.job_id), job, w)
            if usage is not None and job.ended_at is None and rightsizing.due(
                    usage, p.rightsizing_every_s):
                out.append(rightsizing.report(usage, job, p.idle_threshold, False, end))
            _put(self.usage, w.job_id, usage)
        return out + self._advance(end)

    def on_inventory(self, inv: NodeInventory) -> list[Message]:
        node_key = f"{inv.cluster}/{inv.node}"
        known = self.nodes.get(node_key, NodeGpus())
        if inv.ts <= known.last_ts:
            return []  # a replay, or older than what is known
        drains = {g: d for g in known.gpus
                  if (d := self.drains.get(health_key(inv.cluster, inv.node, g))) is not None}
        jobs_on = self._jobs_on(inv.node, {g.index for g in inv.gpus} | set(known.gpus))
        after, out = health.observe_node(drains, set(known.gpus), inv, jobs_on,
                                         self.params.undrain_after_s)
        for gpu, state in after.items():
            _put(self.drains, health_key(inv.cluster, inv.node, gpu), state)
        listed = sorted(set(known.gpus) | {g.index for g in inv.gpus})
        self.nodes[node_key] = NodeGpus(gpus=listed, last_ts=inv.ts)
        return out

    def on_placement(self, msg: Placement) -> list[Message]:
        job_id = msg.job.job_id
        before = self.jobs.get(job_id)
        out: list[Message] = []
        if before is not None and before.ended_at is not None and not before.settled:
            out = self._settle(before, msg.ts)  # requeued: its last attempt is done
        self.jobs[job_id] = jobs.on_placement(self.jobs.get(job_id), msg)
        return out

    def on_job_event(self, ev: JobEvent) -> list[Message]:
        record, ended = jobs.on_event(self.jobs.get(ev.job_id), ev)
        if record is None:
            return []
        self.jobs[ev.job_id] = record
        if not ended:
            return []
        out = reclaim.on_job_end(self.reclaims.pop(ev.job_id, None))
        meta = self.meta.get(META, Meta())
        meta.pending[ev.job_id] = record.ended_at or ev.ts
        self.meta[META] = meta
        return out

    def _jobs_on(self, node: str, gpus: set[int]) -> dict[int, list[str]]:
        """The running jobs on each of ``gpus`` of ``node``: one pass over the jobs."""
        out: dict[int, list[str]] = {g: [] for g in gpus}
        for j in self.jobs.values():
            for g in gpus:
                if jobs.running_on(j, node, g):
                    out[g].append(j.job_id)
        return {g: sorted(ids) for g, ids in out.items()}

    def _advance(self, end: float) -> list[Message]:
        """The watermark moves to ``end``: settle ended jobs, forget old ones."""
        meta = self.meta.get(META, Meta())
        if end <= meta.watermark:
            return []
        meta.watermark = end
        out: list[Message] = []
        for job_id, ended_at in sorted(meta.pending.items()):
            job = self.jobs.get(job_id)
            if job is None:
                del meta.pending[job_id]
            elif job.ended_at is None:
                del meta.pending[job_id]  # placed again: settled then
            elif not job.settled and end - ended_at >= self.params.settle_s:
                out += self._settle(job, ended_at + self.params.settle_s)
            elif end - ended_at > self.params.job_retention_s:
                del self.jobs[job_id]
                del meta.pending[job_id]
        self.meta[META] = meta
        return out

    def _settle(self, job: JobRecord, at: float) -> list[Message]:
        """The job's last windows are in: its final right-sizing report."""
        usage = self.usage.pop(job.job_id, None)
        job.settled = True
        self.jobs[job.job_id] = job
        if usage is None or usage.attempt != job.attempt:
            return []
        return [rightsizing.report(usage, job, self.params.idle_threshold, True, at)]


V = TypeVar("V")


def _put(table: MutableMapping[str, V], key: str, value: V | None) -> None:
    if value is None:
        table.pop(key, None)
    else:
        table[key] = value
