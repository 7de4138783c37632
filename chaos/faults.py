"""The faults, by name: each one breaks something and heals it; ``run`` measures the rest.

A fault is ``async def fault(ctx, window)``; it notes in the window what it did (and, for a
node death, which nodes died when, so the lease can be checked)."""

from __future__ import annotations

import asyncio
import random
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from chaos.check import Window
from chaos.config import ChaosConfig
from chaos.poison import INPUT_TOPICS, poison_record
from chaos.stack import Stack
from gpufleet.bus import topic
from gpufleet.localkafka import free_port
from gpufleet.supervise import Supervisor, gpufleet_argv
from services.fleet.core import node_names


@dataclass
class Ctx:
    stack: Stack
    cfg: ChaosConfig

    async def sleep(self, seconds: float) -> None:
        """Wait while the supervisor keeps its children running."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.stack.poll()
            await asyncio.sleep(min(0.3, max(0.0, end - time.monotonic())))

    @property
    def sup(self) -> Supervisor:
        assert self.stack.sup is not None
        return self.stack.sup


Fault = Callable[[Ctx, Window], Awaitable[None]]


def kill(service: str) -> Fault:
    async def fault(ctx: Ctx, w: Window) -> None:
        pid = ctx.sup.send(service, signal.SIGKILL)
        w.notes.append(f"kill -9 {service} (pid {pid})")
        await ctx.sleep(0.5)  # the supervisor restarts it after its backoff
    return fault


def broker(sig: int) -> Fault:
    async def fault(ctx: Ctx, w: Window) -> None:
        b = ctx.stack.broker
        assert b is not None, "a single-broker fault on a cluster stack"
        if sig == signal.SIGKILL:
            await asyncio.to_thread(b.kill, signal.SIGKILL)
        else:
            await asyncio.to_thread(b.stop)
        w.notes.append(f"broker {signal.Signals(sig).name}, away {ctx.cfg.broker_down_s:.0f}s")
        await ctx.sleep(ctx.cfg.broker_down_s)
        await asyncio.to_thread(b.start)
    return fault


async def warehouse_down(ctx: Ctx, w: Window) -> None:
    await asyncio.to_thread(ctx.sup.hold, "warehouse", signal.SIGTERM)
    w.notes.append(f"warehouse down {ctx.cfg.warehouse_down_s:.0f}s")
    await ctx.sleep(ctx.cfg.warehouse_down_s)
    ctx.sup.release("warehouse")


async def fleet_down(ctx: Ctx, w: Window) -> None:
    await asyncio.to_thread(ctx.sup.hold, "fleet", signal.SIGKILL)
    nodes = frozenset(node_names("sim", ctx.cfg.nodes))
    w.died = (time.time(), nodes)
    down = ctx.cfg.fleet_down_s()
    w.notes.append(f"fleet killed for {down:.0f}s (lease {ctx.cfg.lease_s:.0f}s)")
    await ctx.sleep(down)
    ctx.sup.release("fleet")


async def poison(ctx: Ctx, w: Window) -> None:
    bus = ctx.stack.bus()
    producer = AIOKafkaProducer(bootstrap_servers=bus.kafka_bootstrap, acks="all",
                                max_request_size=8 << 20)
    await producer.start()
    rng = random.Random(ctx.cfg.seed)
    sent = n = 0
    try:
        end = time.monotonic() + ctx.cfg.poison_s
        while time.monotonic() < end:
            name = INPUT_TOPICS[n % len(INPUT_TOPICS)]
            key, value = poison_record(name, n, time.time(), rng)
            n += 1
            try:
                await asyncio.wait_for(producer.send_and_wait(topic(bus, name), value, key=key),
                                       10.0)
                sent += 1
            except (KafkaError, TimeoutError):
                pass
            await ctx.sleep(1.0 / ctx.cfg.poison_per_s)
    finally:
        await producer.stop()
    w.notes.append(f"{sent} poison records on {len(INPUT_TOPICS)} topics")


async def second_scheduler(ctx: Ctx, w: Window) -> None:
    env = {**ctx.stack.env, "GPUFLEET_SCHEDULER_OPS_PORT": str(free_port())}
    with ctx.stack.log("scheduler-2").open("ab") as out:
        proc = subprocess.Popen(list(gpufleet_argv("scheduler")), env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    first_restarts = ctx.sup.children["scheduler"].restarts
    await ctx.sleep(ctx.cfg.second_scheduler_s)
    second_alive = proc.poll() is None
    if second_alive:
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(proc.wait, 30)
        except subprocess.TimeoutExpired:
            proc.kill()
            await asyncio.to_thread(proc.wait)
    fenced = ctx.sup.children["scheduler"].restarts - first_restarts
    w.notes.append(f"second scheduler {'ran' if second_alive else f'exited ({proc.returncode})'}"
                   f"; the first was restarted {fenced} time(s)")


async def cluster_broker_kill(ctx: Ctx, w: Window) -> None:
    cluster = ctx.stack.cluster
    assert cluster is not None, "the cluster fault needs the 3-broker stack"
    await asyncio.to_thread(cluster.kill, 1, signal.SIGKILL)
    w.notes.append(f"broker 2 of 3 killed under load for {ctx.cfg.cluster_down_s:.0f}s")
    await ctx.sleep(ctx.cfg.cluster_down_s)
    await asyncio.to_thread(cluster.restart, 1)


FAULTS: dict[str, Fault] = {
    "kill-warehouse": kill("warehouse"),
    "kill-ingest": kill("ingest"),
    "kill-scheduler": kill("scheduler"),
    "kill-fleet": kill("fleet"),
    "kill-api": kill("api"),
    "broker-sigterm": broker(signal.SIGTERM),
    "broker-sigkill": broker(signal.SIGKILL),
    "warehouse-down": warehouse_down,
    "fleet-down": fleet_down,
    "poison": poison,
    "second-scheduler": second_scheduler,
    "cluster-broker-kill": cluster_broker_kill,
}
