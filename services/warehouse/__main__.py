"""``gpufleet warehouse serve|migrate``: the embedded ClickHouse endpoint and the schema."""

from __future__ import annotations

import argparse
import sys

from gpufleet.config import load
from gpufleet.runner import run_service
from services.warehouse.config import WarehouseSettings, exposure_problem


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True)
    serve = sub.add_parser("serve", help="serve the ClickHouse HTTP interface over embedded chDB")
    serve.add_argument("--data", help="data directory (default: GPUFLEET_WAREHOUSE_DATA)")
    serve.add_argument("--port", type=int, help="port (default: GPUFLEET_WAREHOUSE_PORT, 8123)")
    serve.add_argument("--host", help="address (default: GPUFLEET_WAREHOUSE_HOST, 127.0.0.1)")
    mig = sub.add_parser("migrate", help="apply the schema migrations (idempotent)")
    mig.add_argument("--url", help="ClickHouse URL (default: GPUFLEET_CLICKHOUSE_URL)")


def run(args: argparse.Namespace) -> int:
    if args.action == "serve":
        from services.warehouse.server import serve

        settings = load(WarehouseSettings, warehouse_data=args.data, warehouse_port=args.port,
                        warehouse_host=args.host)
        problem = exposure_problem(settings)
        if problem is not None:
            print(problem, file=sys.stderr)
            return 2
        return run_service(lambda stop: serve(settings, stop), settings.log_level)
    from services.warehouse.migrate import connect, migrate

    settings = load(WarehouseSettings, clickhouse_url=args.url)
    done = migrate(connect(settings.clickhouse_url))
    print(f"migrations applied: {len(done)}" + "".join(f"\n  {m.version:04d}_{m.name}"
                                                         for m in done))
    return 0


if __name__ == "__main__":
    from gpufleet.cli import main

    sys.exit(main(["warehouse", *sys.argv[1:]]))
