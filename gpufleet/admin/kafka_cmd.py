"""``gpufleet kafka run|start|stop|status``: the local broker for one machine."""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path

from gpufleet.localkafka import CACHE, KafkaSetupError, LocalKafka, ensure_jars


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["run", "start", "stop", "status", "fetch"],
                   help="run: in the foreground until Ctrl-C; start: in the background")
    p.add_argument("--data", type=Path, default=CACHE / "kafka" / "data")
    p.add_argument("--port", type=int, default=9092)
    p.add_argument("--controller-port", type=int, default=9093)


def run(args: argparse.Namespace) -> int:
    broker = LocalKafka(data=args.data, port=args.port, controller_port=args.controller_port)
    try:
        return _act(args.action, broker)
    except KafkaSetupError as e:
        print(f"gpufleet kafka: {e}", file=sys.stderr)
        return 1


def _act(action: str, broker: LocalKafka) -> int:
    if action == "fetch":
        print(ensure_jars())
    elif action == "status":
        pid = broker.running_pid()
        print(f"running (pid {pid}) on {broker.bootstrap}" if pid else "not running")
        return 0 if pid else 3
    elif action == "stop":
        print("stopped" if broker.stop() else "not running")
    elif action == "start":
        started = broker.start()
        print(("started" if started else "already running") + f" on {broker.bootstrap}")
    else:
        started = broker.start()
        print(("started" if started else "already running") + f" on {broker.bootstrap}; "
              "Ctrl-C stops it", flush=True)
        _wait_for_signal()
        if started:
            broker.stop()
            print("stopped")
    return 0


def _wait_for_signal() -> None:
    stop = False

    def _stop(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _stop)
    try:
        while not stop:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
