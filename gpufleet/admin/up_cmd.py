"""``gpufleet up``: the whole stack on one machine, in the foreground; Ctrl-C stops it all.

Starts the local Kafka broker (unless ``GPUFLEET_KAFKA_BOOTSTRAP`` names one), creates the
topics, then runs each step of ``STACK`` in order: one-shot steps to completion, services as
child processes (waiting for a service's port before the next step when it has one).
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

from gpufleet.cli import available
from gpufleet.config import BusSettings, load
from gpufleet.localkafka import KafkaSetupError, LocalKafka, default_broker, port_open
from gpufleet.topics import create_topics


@dataclass(frozen=True)
class Step:
    name: str
    argv: tuple[str, ...]  # arguments of the `gpufleet` command
    once: bool = False  # run to completion before going on
    wait_port: int | None = None  # a service that is ready when this port answers
    port_env: str | None = None  # the variable that moves that port
    announce: str = ""  # printed once the step is up; {port} is filled in


# In order. Steps whose command is not in this installation are skipped.
STACK: tuple[Step, ...] = (
    Step("warehouse", ("warehouse", "serve"), wait_port=8123, port_env="GPUFLEET_WAREHOUSE_PORT",
         announce="warehouse (ClickHouse HTTP): http://127.0.0.1:{port}/play"),
    Step("migrate", ("warehouse", "migrate"), once=True),
    Step("ingest", ("ingest",)),
    Step("analytics", ("analytics",)),
    Step("scheduler", ("scheduler",)),
    Step("fleet", ("fleet-sim",)),
    Step("api", ("api",), wait_port=8080, port_env="GPUFLEET_API_PORT",
         announce="dashboard: http://127.0.0.1:{port}/   API: http://127.0.0.1:{port}/api/v1/"),
    Step("demo", ("demo-workload",)),
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--only", nargs="*", help="start only these steps (by name)")
    p.add_argument("--nodes", type=int, default=16, help="simulated GPU nodes (default 16)")


class UpError(Exception):
    """The stack cannot come up; the message says why."""


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except (UpError, KafkaSetupError) as e:
        print(f"gpufleet up: {e}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    env = dict(os.environ)
    env["GPUFLEET_SIM_NODES"] = env.get("GPUFLEET_SIM_NODES", str(args.nodes))
    have = available()
    steps = [s for s in STACK if s.argv[0] in have and (not args.only or s.name in args.only)]
    ports = {s.name: _port_of(s, env) for s in steps}  # bad values stop us before anything runs
    broker: LocalKafka | None = None
    if not env.get("GPUFLEET_KAFKA_BOOTSTRAP"):
        broker = default_broker()
        started = broker.start()
        print(f"kafka: {'started' if started else 'already running'} on {broker.bootstrap}")
        env["GPUFLEET_KAFKA_BOOTSTRAP"] = broker.bootstrap
        if not started:
            broker = None  # someone else's: leave it running
    try:
        settings = load(BusSettings, env)
        created = asyncio.run(create_topics(settings))
        print(f"topics: {len(created)} created under prefix {settings.topic_prefix!r}")
        return supervise(steps, ports, env)
    finally:
        if broker is not None:
            broker.stop()
            print("kafka: stopped")


def _port_of(step: Step, env: dict[str, str]) -> int | None:
    if step.wait_port is None:
        return None
    raw = env.get(step.port_env or "", str(step.wait_port))
    try:
        return int(raw)
    except ValueError:
        raise UpError(f"{step.port_env}={raw!r}: not a port number") from None


def supervise(steps: list[Step], ports: dict[str, int | None], env: dict[str, str]) -> int:
    """Start each step; children get sessions of their own, so a Ctrl-C reaches only us and
    each child then gets exactly one SIGTERM: a clean stop, flushes included."""
    children: dict[str, subprocess.Popen[bytes]] = {}
    stopping = False

    def _stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    before = {sig: signal.signal(sig, _stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    code = 0
    try:
        for step in steps:
            if stopping:
                return 130
            cmd = [sys.executable, "-m", "gpufleet.cli", *step.argv]
            if step.once:
                print(f"{step.name}: running {' '.join(step.argv)}", flush=True)
                done = subprocess.run(cmd, env=env, start_new_session=True)
                if done.returncode != 0:
                    print(f"{step.name}: failed ({done.returncode})", file=sys.stderr)
                    return done.returncode
                continue
            port = ports.get(step.name)
            if port is not None and port_open(port):
                raise UpError(f"{step.name}: port {port} is already in use "
                              f"(another program, or a stack already running; {step.port_env})")
            children[step.name] = subprocess.Popen(cmd, env=env, start_new_session=True)
            print(f"{step.name}: started (pid {children[step.name].pid})", flush=True)
            if port is not None:
                if not _wait_port(port, children[step.name], lambda: stopping):
                    if stopping:
                        return 130
                    raise UpError(f"{step.name} did not come up on port {port}")
                if step.announce:
                    print(step.announce.format(port=port), flush=True)
        print("all started; Ctrl-C stops everything", flush=True)
        while not stopping:
            for name, child in children.items():
                if child.poll() is not None:
                    print(f"{name}: exited with {child.returncode}; stopping", file=sys.stderr)
                    code = child.returncode or 1
                    stopping = True
            time.sleep(0.3)
    finally:
        _stop_all(children)
        for sig, handler in before.items():
            signal.signal(sig, handler)
    return code


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


def _stop_all(children: dict[str, subprocess.Popen[bytes]], grace: float = 10.0) -> None:
    for child in reversed(children.values()):
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for name, child in reversed(children.items()):
        try:
            child.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        print(f"{name}: stopped", flush=True)
