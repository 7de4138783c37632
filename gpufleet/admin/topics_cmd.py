"""``gpufleet topics create|list``: the Kafka topics of every contract."""

from __future__ import annotations

import argparse
import asyncio

from gpufleet.config import BusSettings, load
from gpufleet.contracts import TOPICS, topic_name
from gpufleet.topics import create_topics, topic_configs


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["create", "list"])
    p.add_argument("--replication-factor", type=int, default=None,
                   help="replicas per partition (default: GPUFLEET_TOPIC_REPLICATION_FACTOR)")
    p.add_argument("--partitions", type=int, default=None,
                   help="partitions for every topic (default: each topic's own count)")


def run(args: argparse.Namespace) -> int:
    settings = load(BusSettings)
    if args.action == "list":
        for spec in TOPICS:
            conf = ",".join(f"{k}={v}" for k, v in topic_configs(spec).items())
            name = topic_name(spec.name, settings.topic_prefix)
            print(f"{name:<32} partitions={spec.partitions:<3} key={spec.key:<6} {conf}")
        return 0
    created = asyncio.run(create_topics(settings, args.replication_factor, args.partitions))
    for name in created:
        print(f"created {name}")
    print(f"{len(created)} created, {len(TOPICS) - len(created)} already there")
    return 0
