"""``gpufleet up``: the whole stack on one machine, in the foreground, supervised.

Starts the local Kafka broker (unless ``GPUFLEET_KAFKA_BOOTSTRAP`` names an external one),
creates the topics, then runs each step of ``STACK`` in order: one-shot steps to completion,
services as child processes (waiting for a service's port before the next step when it has
one). A child that exits is started again after a backoff, with one line that says so; the
stack does not go down with it. Ctrl-C or SIGTERM stops the children in reverse order, each
one fully before the next (api, fleet, scheduler, ingest and its last flush, warehouse), then
the broker.

Every port moves with ``--base-port`` (see ``up_ports``), and ``--data`` (implied by
``--base-port``) gives the stack folders of its own, so that two stacks run side by side.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gpufleet.admin import up_ports
from gpufleet.cli import available
from gpufleet.config import BusSettings, load
from gpufleet.localkafka import CACHE, KafkaSetupError, LocalKafka, port_open
from gpufleet.supervise import Backoff, Service, Supervisor, gpufleet_argv
from gpufleet.topics import create_topics


@dataclass(frozen=True)
class Step:
    name: str
    argv: tuple[str, ...]  # arguments of the `gpufleet` command
    once: bool = False  # run to completion before going on
    port_var: str | None = None  # the variable of the port it listens on (see up_ports)
    wait: bool = False  # ready when that port answers: wait for it before the next step
    announce: str = ""  # printed once the step is up; {port} is filled in


# In dependency order; stopped in the reverse order. Steps not in this installation are skipped.
STACK: tuple[Step, ...] = (
    Step("warehouse", ("warehouse", "serve"), port_var="GPUFLEET_WAREHOUSE_PORT", wait=True,
         announce="warehouse (ClickHouse HTTP): http://127.0.0.1:{port}/"),
    Step("migrate", ("warehouse", "migrate"), once=True),
    Step("ingest", ("ingest",), port_var="GPUFLEET_INGEST_OPS_PORT"),
    Step("analytics", ("analytics",), port_var="GPUFLEET_ANALYTICS_OPS_PORT"),
    Step("scheduler", ("scheduler",), port_var="GPUFLEET_SCHEDULER_OPS_PORT"),
    Step("fleet", ("fleet-sim",), port_var="GPUFLEET_FLEET_OPS_PORT"),
    Step("api", ("api",), port_var="GPUFLEET_API_PORT", wait=True,
         announce="dashboard: http://127.0.0.1:{port}/   API: http://127.0.0.1:{port}/api/v1/"),
    Step("demo", ("demo-workload",)),
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--only", nargs="*", help="start only these steps (by name)")
    p.add_argument("--nodes", type=int, default=16, help="simulated GPU nodes (default 16)")
    p.add_argument("--base-port", type=int, default=None,
                   help=f"move every port of the stack to this one and the next "
                   f"{up_ports.BLOCK - 1} (broker, controller, warehouse, api, ops ports); "
                   "a GPUFLEET_*_PORT "
                   "variable that is set wins")
    p.add_argument("--data", type=Path, default=None,
                   help="folder for this stack's broker log, warehouse and executor state "
                   "(default: the cache folder; with --base-port: <cache>/stacks/<port>)")
    p.add_argument("--restart-backoff", type=float, default=1.0,
                   help="seconds before restarting a child that exited (doubles, up to 30)")


class UpError(Exception):
    """The stack cannot come up; the message says why."""


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except (UpError, KafkaSetupError, up_ports.PortError) as e:
        print(f"gpufleet up: {e}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    env = dict(os.environ)
    env["GPUFLEET_SIM_NODES"] = env.get("GPUFLEET_SIM_NODES", str(args.nodes))
    external = bool(env.get("GPUFLEET_KAFKA_BOOTSTRAP"))
    ports = up_ports.plan(env, args.base_port)
    data: Path | None = args.data
    if data is None and args.base_port is not None:
        data = CACHE / "stacks" / str(args.base_port)
    if data is not None:
        env.setdefault("GPUFLEET_WAREHOUSE_DATA", str(data / "warehouse"))
        env.setdefault("GPUFLEET_STATE_DIR", str(data / "executor"))
    env = up_ports.stack_env(env, ports)
    have = available()
    steps = [s for s in STACK if s.argv[0] in have and (not args.only or s.name in args.only)]
    _check_free(steps, ports)
    print(f"ports: {up_ports.describe(ports)}", flush=True)
    broker: LocalKafka | None = None
    if not external:
        broker = LocalKafka(
            data=(data / "kafka") if data is not None else CACHE / "kafka" / "data",
            port=ports["GPUFLEET_KAFKA_PORT"],
            controller_port=ports["GPUFLEET_KAFKA_CONTROLLER_PORT"],
        )
        started = broker.start()
        print(f"kafka: {'started' if started else 'already running'} on {broker.bootstrap}")
        env["GPUFLEET_KAFKA_BOOTSTRAP"] = broker.bootstrap
        if not started:
            broker = None  # someone else's: leave it running
    try:
        settings = load(BusSettings, env)
        created = asyncio.run(create_topics(settings))
        print(f"topics: {len(created)} created under prefix {settings.topic_prefix!r}")
        supervisor = Supervisor(env, Backoff(first=args.restart_backoff))
        return supervise(steps, ports, supervisor, broker)
    finally:
        if broker is not None:
            broker.stop()
            print("kafka: stopped", flush=True)


def _check_free(steps: list[Step], ports: dict[str, int]) -> None:
    for step in steps:
        port = ports.get(step.port_var or "", 0)
        if port and port_open(port):
            raise UpError(f"{step.name}: port {port} is already in use (another program, or a "
                          f"stack already running; move it with {step.port_var} or --base-port)")


def supervise(
    steps: list[Step], ports: dict[str, int], sup: Supervisor, broker: LocalKafka | None = None
) -> int:
    """Start each step, then keep the children (and our broker) running until a signal."""
    stopping = False

    def _stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    before = {sig: signal.signal(sig, _stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        for step in steps:
            if stopping:
                return 130
            if step.once:
                print(f"{step.name}: running {' '.join(step.argv)}", flush=True)
                done = subprocess.run(gpufleet_argv(*step.argv), env=sup.env,
                                      start_new_session=True)
                if done.returncode != 0:
                    print(f"{step.name}: failed ({done.returncode})", file=sys.stderr)
                    return done.returncode
                continue
            child = sup.start(Service(step.name, gpufleet_argv(*step.argv)))
            assert child.proc is not None
            print(f"{step.name}: started (pid {child.proc.pid})", flush=True)
            port = ports.get(step.port_var or "", 0)
            if step.wait and port:
                if not _wait_port(port, child.proc, lambda: stopping):
                    if stopping:
                        return 130
                    raise UpError(f"{step.name} did not come up on port {port}")
                if step.announce:
                    print(step.announce.format(port=port), flush=True)
        print("all started; Ctrl-C stops everything", flush=True)
        while not stopping:
            sup.poll()
            if broker is not None and broker.running_pid() is None:
                print("kafka: exited; starting it again", flush=True)
                broker.start()
                print(f"kafka: started again on {broker.bootstrap}", flush=True)
            time.sleep(0.3)
        return 0
    finally:
        sup.stop_all()
        for sig, handler in before.items():
            signal.signal(sig, handler)


def _wait_port(
    port: int, child: subprocess.Popen[bytes], stopping: Callable[[], bool], timeout: float = 60.0
) -> bool:
    """True once the port answers; False if the child died, we were stopped, or time ran out."""
    deadline = time.monotonic() + timeout
    while not port_open(port):
        if child.poll() is not None or stopping() or time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True
