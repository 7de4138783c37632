"""Loop plugin: act on the analytics' reclaim decisions (``reclaims``).

A ``ReclaimRequest`` stops the job through the preemption path (``loopstops.reclaim_stops``
says whether it still applies): requeued when the request says ``requeue``, else stopped for
good; its reason is the request's ("reclaimed: idle below 5 % for 30 min under policy
research-default; requeued"). A ``ReclaimWarning`` or ``ReclaimWithdrawn`` changes nothing but
the running job's reason, so its owner sees the warning where they look. Enable with
``GPUFLEET_SCHEDULER_LOOP=reclaim``.
"""

from __future__ import annotations

from gpufleet.contracts import ReclaimRequest, ReclaimWarning, ReclaimWithdrawn
from services.scheduler.framework import PluginArgs
from services.scheduler.loop import Decision, LoopView, Note
from services.scheduler.loopstops import reclaim_stops

NAME = "reclaim"


class Reclaim:
    name = NAME

    def react(self, msg: object, view: LoopView) -> list[Decision]:
        match msg:
            case ReclaimRequest():
                return [reclaim_stops(msg, view.running, view.names, enabled=True)]
            case ReclaimWarning() | ReclaimWithdrawn() if msg.job_id in view.running:
                run = view.running[msg.job_id]
                if run.stopping or not msg.reason:
                    return []
                prefix = "warned: " if isinstance(msg, ReclaimWarning) else "not reclaimed: "
                return [Note(msg.job_id, prefix + msg.reason)]
        return []


def factory(args: PluginArgs) -> Reclaim:
    del args
    return Reclaim()
