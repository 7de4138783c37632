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
    Step("scheduler", ("scheduler",)),
    Step("fleet", ("fleet-sim",)),
    Step("api", ("api",), wait_port=8080, port_env="GPUFLEET_API_PORT",
         announce="dashboard: http://127.0.0.1:{port}/   API: http://127.0.0.1:{port}/api/v1/"),
    Step("demo", ("demo-workload",)),
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--only", nargs="*", help="start only these steps (by name)")
    p.add_argument("--nodes", type=int, default=16, help="simulated GPU nodes (default 16)")


def run(args: argparse.Namespace) -> int:
    broker: LocalKafka | None = None
    env = dict(os.environ)
    if not env.get("GPUFLEET_KAFKA_BOOTSTRAP"):
        broker = default_broker()
        try:
            started = broker.start()
        except KafkaSetupError as e:
            print(f"gpufleet up: {e}", file=sys.stderr)
            return 1
        print(f"kafka: {'started' if started else 'already running'} on {broker.bootstrap}")
        env["GPUFLEET_KAFKA_BOOTSTRAP"] = broker.bootstrap
        if not started:
            broker = None  # someone else's: leave it running
    try:
        settings = load(BusSettings, env)
        created = asyncio.run(create_topics(settings))
        print(f"topics: {len(created)} created under prefix {settings.topic_prefix!r}")
        env["GPUFLEET_SIM_NODES"] = env.get("GPUFLEET_SIM_NODES", str(args.nodes))
        have = available()
        steps = [s for s in STACK if s.argv[0] in have and (not args.only or s.name in args.only)]
        return supervise(steps, env)
    finally:
        if broker is not None:
            broker.stop()
            print("kafka: stopped")


def supervise(steps: list[Step], env: dict[str, str]) -> int:
    children: dict[str, subprocess.Popen[bytes]] = {}
    stopping = False

    def _stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    code = 0
    try:
        for step in steps:
            cmd = [sys.executable, "-m", "gpufleet.cli", *step.argv]
            if step.once:
                print(f"{step.name}: running {' '.join(step.argv)}", flush=True)
                done = subprocess.run(cmd, env=env)
                if done.returncode != 0:
                    print(f"{step.name}: failed ({done.returncode})", file=sys.stderr)
                    return done.returncode
                continue
            children[step.name] = subprocess.Popen(cmd, env=env)
            print(f"{step.name}: started (pid {children[step.name].pid})", flush=True)
            if step.wait_port is not None:
                port = int(env.get(step.port_env or "", step.wait_port))
                _wait_port(step.name, port, children[step.name])
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
    return code


def _wait_port(name: str, port: int, child: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not port_open(port):
        if child.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{name} did not come up on port {port}")
        time.sleep(0.2)


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
