"""``gpufleet jobs --waste``: what jobs asked for against what they used, and a tenant's totals;
the lines a job's detail gains (measured usage per GPU, right-sizing, reclaims)."""

from __future__ import annotations

import argparse
import json
import time
import urllib.parse
from typing import Any

from services.api.cli.client import Client, table

GIB = 1 << 30


def _gib(n: int) -> str:
    return f"{n / GIB:.1f} GiB"


def render_rightsizing(body: dict[str, Any]) -> str:
    rows = [[j["job_id"], j.get("tenant") or "-", "ended" if j["final"] else "running",
             str(j["gpus_requested"]), str(j["gpus_busy"]), str(j["recommended_gpus"]),
             f"{j['util_p95']:.0f}", f"{j['gpu_hours']:.2f}", f"{j['idle_gpu_hours']:.2f}",
             _gib(j["mem_peak_bytes"]), j["recommendation"]] for j in body["jobs"]]
    text = table(rows, ["JOB", "TENANT", "STATE", "ASKED", "BUSY", "ADVISED", "P95%", "GPU-H",
                        "IDLE-GPU-H", "PEAK MEM", "RECOMMENDATION"])
    return f"{text}\n{len(body['jobs'])} of {body['total']} jobs with a right-sizing report"


def render_tenant(body: dict[str, Any], hours: float) -> str:
    t = body["totals"]
    share = "-" if t["busy_share"] is None else f"{t['busy_share']:.0%}"
    return (f"tenant {body['tenant']}, last {hours:g} h: allocated "
            f"{t['allocated_gpu_hours']:.2f} GPU-h, busy {t['busy_gpu_hours']:.2f} ({share}), "
            f"idle {t['idle_gpu_hours']:.2f}, energy {t['energy_kwh']:.2f} kWh; "
            f"{t['reclaimed_jobs']} of {t['warned_jobs']} warned jobs reclaimed "
            f"({t['idle_gpu_hours_reclaimed']:.2f} idle GPU-h); "
            f"{t['gpus_to_give_back']} GPUs to give back")


def run(client: Client, args: argparse.Namespace) -> str:
    """The text (or JSON) ``jobs --waste`` prints; ApiError propagates."""
    body = client.get("/api/v1/rightsizing", tenant=args.tenant, limit=args.limit)
    tenant = None
    if args.tenant:
        now = int(time.time())
        tenant = client.get(f"/api/v1/tenants/{urllib.parse.quote(args.tenant, safe='')}/waste",
                            **{"from": now - int(args.hours * 3600), "to": now})
    if args.json:
        return json.dumps({"rightsizing": body, "tenant": tenant}, indent=2)
    text = render_rightsizing(body)
    return f"{render_tenant(tenant, args.hours)}\n{text}" if tenant is not None else text


def detail_lines(body: dict[str, Any]) -> list[str]:
    """A job's measured usage, right-sizing and reclaims, for ``gpufleet jobs <id>``."""
    lines: list[str] = []
    usage = body.get("usage")
    if usage:
        mean = "-" if usage["util_mean"] is None else f"{usage['util_mean']} %"
        lines.append(f"  measured: {usage['gpu_hours']:.2f} GPU-h, busy "
                     f"{usage['busy_gpu_hours']:.2f}, mean {mean}, peak memory "
                     f"{_gib(usage['mem_peak_bytes'])}, {usage['energy_kwh']:.3f} kWh")
        for g in usage["gpus"]:
            lines.append(f"    {g['node']}/{g['gpu']}: mean {g['util_mean']} %, max "
                         f"{g['util_max']} %, peak {_gib(g['mem_peak_bytes'])}")
    elif body.get("usage_note"):
        lines.append(f"  measured: {body['usage_note']}")
    r = body.get("rightsizing")
    if r:
        lines.append(f"  right-sizing ({'final' if r['final'] else 'so far'}): "
                     f"{r['recommendation']}")
    for c in body.get("reclaims") or []:
        when = time.strftime("%H:%M:%S", time.localtime(c["ts"]))
        lines.append(f"  {when} {c['kind']:<10} {c.get('action') or ''} {c['reason']}")
    return lines
