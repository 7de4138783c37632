"""The stack under test: a broker (or a 3-broker cluster) and every service on free ports,
each service a child of one ``Supervisor`` that restarts what dies, as ``gpufleet up`` does."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from chaos.config import ChaosConfig
from gpufleet.config import BusSettings
from gpufleet.localkafka import LocalKafka, LocalKafkaCluster, free_port
from gpufleet.supervise import Backoff, Service, Supervisor, gpufleet_argv
from gpufleet.topics import create_topics

PREFIX = "chaos"
CLUSTER = "chaos"
# In dependency order (the supervisor stops them in reverse).
SERVICES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("warehouse", ("warehouse", "serve")),
    ("ingest", ("ingest",)),
    ("scheduler", ("scheduler",)),
    ("fleet", ("fleet-sim",)),
    ("api", ("api",)),
)


class StackError(Exception):
    """The stack did not come up; the message says which part and where its log is."""


@dataclass
class Stack:
    cfg: ChaosConfig
    folder: Path
    brokers: int = 1  # 1: one broker; 3: a KRaft cluster with replication factor 3
    say: Callable[[str], None] = print
    ports: dict[str, int] = field(default_factory=dict)
    broker: LocalKafka | None = None
    cluster: LocalKafkaCluster | None = None
    sup: Supervisor | None = None
    env: dict[str, str] = field(default_factory=dict)
    # (when, service, how) of every exit the supervisor saw that was not a kill -9 of ours
    exits: list[tuple[float, str, str]] = field(default_factory=list)

    @property
    def bootstrap(self) -> str:
        if self.cluster is not None:
            return self.cluster.bootstrap
        assert self.broker is not None
        return self.broker.bootstrap

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.ports['api']}"

    @property
    def warehouse_url(self) -> str:
        return f"http://default:@localhost:{self.ports['warehouse']}/default"

    def bus(self) -> BusSettings:
        return BusSettings(kafka_bootstrap=self.bootstrap, topic_prefix=PREFIX, cluster=CLUSTER,
                           clickhouse_url=self.warehouse_url)

    def ready_url(self, name: str) -> str:
        port = self.ports[name]
        return f"http://127.0.0.1:{port}/readyz"

    def log(self, name: str) -> Path:
        return self.folder / f"{name}.log"

    # -- up and down -----------------------------------------------------------------------

    async def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        if self.brokers == 3:
            self.cluster = LocalKafkaCluster(self.folder / "kafka")
            await asyncio.to_thread(self.cluster.start)
        else:
            self.broker = LocalKafka(data=self.folder / "kafka", port=free_port(),
                                     controller_port=free_port(), heap="384m")
            await asyncio.to_thread(self.broker.start)
        self.ports = {name: free_port() for name, _ in SERVICES}
        self.env = self._env()
        await create_topics(self.bus(), replication_factor=self.brokers)
        self.sup = Supervisor(self.env, Backoff(first=0.5, cap=5.0), say=self._say)
        for name, argv in SERVICES:
            self.sup.start(Service(name, gpufleet_argv(*argv), log=str(self.log(name)),
                                   stop_grace_s=20.0))
            if name == "warehouse":
                await self.wait_ready(["warehouse"], 60.0)
                await self._migrate()
        if await self.wait_ready([n for n, _ in SERVICES], 120.0) is None:
            raise StackError(f"not every service became ready; logs in {self.folder}")

    def _say(self, line: str) -> None:
        name, _, rest = line.partition(": exited with ")
        if rest and not rest.startswith("SIGKILL"):
            self.exits.append((time.time(), name, rest.split(" after ")[0]))
        self.say(f"  [{time.strftime('%H:%M:%S')}] {line}")

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GPUFLEET_")}
        p = self.ports
        env.update({
            "PYTHONUNBUFFERED": "1",
            "GPUFLEET_KAFKA_BOOTSTRAP": self.bootstrap,
            "GPUFLEET_TOPIC_PREFIX": PREFIX,
            "GPUFLEET_CLUSTER": CLUSTER,
            "GPUFLEET_TOPIC_REPLICATION_FACTOR": str(self.brokers),
            "GPUFLEET_CLICKHOUSE_URL": self.warehouse_url,
            "GPUFLEET_WAREHOUSE_PORT": str(p["warehouse"]),
            "GPUFLEET_WAREHOUSE_DATA": str(self.folder / "warehouse"),
            "GPUFLEET_API_PORT": str(p["api"]),
            "GPUFLEET_SCHEDULER_OPS_PORT": str(p["scheduler"]),
            "GPUFLEET_INGEST_OPS_PORT": str(p["ingest"]),
            "GPUFLEET_FLEET_OPS_PORT": str(p["fleet"]),
            "GPUFLEET_STATE_DIR": str(self.folder / "executor"),
            "GPUFLEET_SIM_NODES": str(self.cfg.nodes),
            "GPUFLEET_SIM_GPUS_PER_NODE": str(self.cfg.gpus_per_node),
            "GPUFLEET_SCHEDULER_NODE_LEASE_S": str(self.cfg.lease_s),
            "GPUFLEET_CACHE": str(os.environ.get("GPUFLEET_CACHE", "")) or str(
                Path(__file__).resolve().parent.parent / ".cache"),
        })
        return env

    async def _migrate(self) -> None:
        done = await asyncio.to_thread(
            subprocess.run, list(gpufleet_argv("warehouse", "migrate")), env=self.env,
            capture_output=True, text=True)
        if done.returncode != 0:
            raise StackError(f"warehouse migrate failed: {done.stdout[-1500:]}"
                             f"{done.stderr[-1500:]}")

    def stop(self) -> None:
        if self.sup is not None:
            self.sup.stop_all()
        if self.cluster is not None:
            self.cluster.stop()
        if self.broker is not None:
            self.broker.stop()

    # -- readiness -------------------------------------------------------------------------

    async def ready(self, names: list[str]) -> dict[str, bool]:
        out: dict[str, bool] = {}
        timeout = aiohttp.ClientTimeout(total=2.0)
        async with aiohttp.ClientSession(timeout=timeout) as s:
            for name in names:
                try:
                    async with s.get(self.ready_url(name)) as r:
                        out[name] = r.status == 200
                except (aiohttp.ClientError, TimeoutError, OSError):
                    out[name] = False
        return out

    async def wait_ready(self, names: list[str], timeout: float) -> float | None:
        """Seconds until every named service answers /readyz with 200; None if it never did
        within ``timeout``. The supervisor keeps restarting what dies meanwhile."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            self.poll()
            if all((await self.ready(names)).values()):
                return time.monotonic() - t0
            await asyncio.sleep(0.5)
        return None

    def poll(self) -> None:
        if self.sup is not None:
            self.sup.poll()
