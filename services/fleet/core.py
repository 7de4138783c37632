"""Building the simulated fleet: node names, models, and each node's telemetry + executor."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gpufleet.runner import Spawned
from services.executor.core import ExecutorCore
from services.executor.driver import Command, EventSink, NodeExecutor, Summary
from services.executor.simrunner import SimRunner
from services.executor.state import StateFile
from services.fleet.config import FleetSettings
from services.telemetry.node import NodeTelemetry
from services.telemetry.sources.sim import MODELS, SimSource, xids_of


def node_names(prefix: str, n: int) -> list[str]:
    width = max(4, len(str(n - 1)))
    return [f"{prefix}-{i:0{width}d}" for i in range(n)]


def models_of(spec: str) -> list[str]:
    models = [m.strip() for m in spec.split(",") if m.strip()]
    unknown = [m for m in models if m not in MODELS]
    if not models or unknown:
        raise ValueError(f"unknown GPU model(s) {unknown or spec!r}; known: {', '.join(MODELS)}")
    return models


@dataclass
class SimNode:
    telemetry: NodeTelemetry
    executor: NodeExecutor


class Fleet:
    """Simulated nodes whose GPU readings follow the jobs their executors run."""

    def __init__(self, settings: FleetSettings, outbox: EventSink, state_dir: Path | None) -> None:
        models = models_of(settings.sim_models)
        self.tasks = Spawned("simulated job")  # every node's runs; the service watches them
        self.nodes: dict[str, SimNode] = {}
        self.summary = Summary(f"fleet of {settings.sim_nodes} nodes")
        for i, name in enumerate(node_names(settings.sim_node_prefix, settings.sim_nodes)):
            core = ExecutorCore(node=name, gpus=settings.sim_gpus_per_node,
                                heartbeat_s=settings.heartbeat_s,
                                max_placement_age_s=settings.max_placement_age_s,
                                busy_wait_s=settings.busy_wait_s,
                                needs_command=False)
            state = StateFile(state_dir / f"{name}.json") if state_dir is not None else None
            executor = NodeExecutor(core, SimRunner(settings.default_sim_duration_s, self.tasks),
                                    outbox, state, summary=self.summary)
            source = SimSource(name, settings.sim_gpus_per_node, models[i % len(models)],
                               load=core.gpu_load, seed=i, xids=self._xids_of(core))
            telemetry = NodeTelemetry(settings.cluster, name, source,
                                      settings.processes_every_s, settings.health_every_s)
            self.nodes[name] = SimNode(telemetry, executor)

    @staticmethod
    def _xids_of(core: ExecutorCore) -> Callable[[], dict[int, int]]:
        return lambda: xids_of(j.placement for j in core.jobs.values())

    @property
    def telemetry(self) -> list[NodeTelemetry]:
        return [n.telemetry for n in self.nodes.values()]

    def recover(self) -> None:
        for n in self.nodes.values():
            n.executor.recover()

    async def dispatch(self, cmd: Command) -> None:
        node = self.nodes.get(cmd.node)
        if node is not None:
            await node.executor.handle(cmd)

    def heartbeats(self) -> None:
        for n in self.nodes.values():
            n.executor.tick()
        self.summary.say(sum(len(n.executor.core.jobs) for n in self.nodes.values()))

    async def close(self) -> None:
        for n in self.nodes.values():
            await n.executor.close()
