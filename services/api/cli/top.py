"""``gpufleet top``: a live view of the fleet and the queue in the terminal, like htop for GPUs.

Plain ANSI escapes (no curses): redrawn every second; ``q`` or Ctrl-C ends it and gives the
terminal back as it was. ``--once`` prints one frame without colours' screen handling.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import select
import shutil
import sys
import time
from collections.abc import Iterator
from typing import Any

from gpufleet.contracts import GPU_MILLI
from services.api.cli.client import ApiError, Client, add_connection_arguments

ESC = "\x1b["
RESET = ESC + "0m"
ENTER, LEAVE = ESC + "?1049h" + ESC + "?25l", ESC + "?25h" + ESC + "?1049l"
HOME_CLEAR = ESC + "H" + ESC + "2J"
# 256-colour backgrounds from cold to hot, for 0..100 % utilization
HEAT = (17, 18, 19, 25, 31, 37, 71, 107, 143, 179, 208, 202, 196)
STATE_MARK = {"free": " ", "partial": "~", "allocated": "*", "unhealthy": "!", "unknown": "?"}
DRAIN_MARK = "D"  # drained for its health (the cause is in the DRAINED lines)
RUNNING = ("placed", "started", "heartbeat", "preempting")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_connection_arguments(parser)
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between refreshes")
    parser.add_argument("--once", action="store_true", help="print one frame and end")
    parser.add_argument("--no-color", action="store_true", help="no colours")


def cell(gpu: dict[str, Any], color: bool) -> str:
    util = gpu.get("util")
    mark = DRAIN_MARK if gpu.get("drain") else STATE_MARK.get(gpu["state"], "?")
    text = " -- " if util is None else f"{util:3.0f}{mark}"
    if not color:
        return text
    if gpu.get("drain"):
        return f"{ESC}45;97m{text}{RESET}"
    if gpu["state"] == "unhealthy":
        return f"{ESC}41;97m{text}{RESET}"
    bg = 236 if util is None else HEAT[min(len(HEAT) - 1, int(util / 100 * len(HEAT)))]
    return f"{ESC}48;5;{bg};97m{text}{RESET}"


def render(summary: dict[str, Any], nodes: list[dict[str, Any]], jobs: list[dict[str, Any]],
           width: int = 120, height: int = 40, color: bool = True, now: float = 0.0) -> str:
    """One frame as text (pure: values in, text out)."""
    s = summary
    bold = (lambda t: f"{ESC}1m{t}{RESET}") if color else (lambda t: t)
    lines = [
        bold(f"gpufleet top · cluster {s['cluster']}") + f"   {time.strftime('%H:%M:%S')}",
        f"nodes {s['nodes_online']}/{s['nodes']}  GPUs {s['gpus']}  "
        f"allocated {s['allocated_share']:.0%}  busy {s['busy_share']:.0%}  "
        f"queue {s['queue_depth']}  running {s['running_jobs']}  "
        f"idle-allocated {s['idle_allocated_gpus']}  power {s['power_w'] / 1000:.1f} kW  "
        f"alerts {s['open_alerts']}",
        "GPU cells: util %, then  * allocated  ~ shared  ! unhealthy  D drained",
        "",
    ]
    drained = [(n["node"], g) for n in nodes for g in n["gpus"] if g.get("drain")]
    per_row = max(1, (width - 22) // 5)
    queued = [j for j in jobs if j["state"] in ("queued", "submitted")]
    running = [j for j in jobs if j["state"] in RUNNING]
    room = max(4, height - len(lines) - 6 - min(len(queued), 5) - min(len(running), 5)
               - (min(len(drained), 5) + 2 if drained else 0))
    for n in nodes:
        gpus = n["gpus"]
        for start in range(0, max(len(gpus), 1), per_row):
            label = f"{n['node'][:13]:<13} {n['model'][:6]:<6}" if start == 0 else " " * 20
            lines.append(f"{label}  " + " ".join(cell(g, color) for g in
                                                  gpus[start:start + per_row]))
            room -= 1
        if room <= 0:
            lines.append(f"... {len(nodes)} nodes in all")
            break
    if drained:
        lines += ["", bold(f"DRAINED ({len(drained)})")]
        lines += [f"  {node}/{g['index']:<4} {g['drain']:<9} {g.get('drain_reason') or ''}"
                  for node, g in drained[:5]]
    lines += ["", bold(f"QUEUE ({len(queued)})")]
    lines += [_job_line(j, now) for j in queued[:5]] or ["  (empty)"]
    lines += [bold(f"RUNNING ({len(running)})")]
    lines += [_job_line(j, now) for j in running[:5]] or ["  (none)"]
    return "\n".join(line if color else line[:width] for line in lines)


def _job_line(j: dict[str, Any], now: float) -> str:
    gpus = (str(j["gpus"]) if j["gpu_milli"] >= GPU_MILLI
            else f"{j['gpu_milli'] / GPU_MILLI:g}")
    since = j.get("submitted") or j["updated"]
    age = f"{max(0.0, now - since):.0f}s" if now and since else ""
    return f"  {j['job_id'][:28]:<28} {j['tenant'][:12]:<12} {j['state']:<9} " \
           f"{gpus:>4} GPU  {j.get('node') or '':<14} {age}"


def frame(client: Client, width: int, height: int, color: bool) -> str:
    summary = client.get("/api/v1/cluster")
    nodes = client.get("/api/v1/nodes")["nodes"]
    jobs = client.get("/api/v1/jobs", limit=200)["jobs"]
    return render(summary, nodes, jobs, width, height, color, time.time())


@contextlib.contextmanager
def raw_terminal() -> Iterator[bool]:
    """Keys without Enter and the alternate screen, put back as they were on the way out."""
    if not sys.stdin.isatty():
        yield False
        return
    import termios
    import tty

    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    tty.setcbreak(fd)
    sys.stdout.write(ENTER)
    try:
        yield True
    finally:
        sys.stdout.write(LEAVE)
        sys.stdout.flush()
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _quit_pressed(interactive: bool, timeout: float) -> bool:
    if not interactive:
        time.sleep(timeout)
        return False
    ready, _, _ = select.select([sys.stdin], [], [], timeout)
    return bool(ready) and os.read(sys.stdin.fileno(), 16).lower().startswith(b"q")


def run(args: argparse.Namespace) -> int:
    client = Client.from_args(args)
    color = not args.no_color and (args.once is False or sys.stdout.isatty())
    if args.once:
        size = shutil.get_terminal_size((120, 40))
        try:
            print(frame(client, size.columns, size.lines, color))
        except ApiError as e:
            print(f"gpufleet top: {e}", file=sys.stderr)
            return 1
        return 0
    with contextlib.suppress(KeyboardInterrupt), raw_terminal() as interactive:
        while True:
            size = shutil.get_terminal_size((120, 40))
            try:
                text = frame(client, size.columns, size.lines - 1, color)
            except ApiError as e:
                text = f"gpufleet top: {e} (retrying)"
            sys.stdout.write(HOME_CLEAR + text + "\n")
            sys.stdout.flush()
            if _quit_pressed(interactive, args.interval):
                break
    return 0
