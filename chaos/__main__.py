"""``python -m chaos [--profile small|long] [--faults ...]``: the fault suite (``make chaos``).

Prints the table and the last line; exits 1 when an invariant failed (or the run itself did).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
import time
from pathlib import Path

from chaos import report
from chaos.config import ALL_FAULTS, PROFILES, profile
from chaos.run import run


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m chaos", description=__doc__)
    p.add_argument("--profile", choices=sorted(PROFILES), default="long")
    p.add_argument("--faults", nargs="*", choices=ALL_FAULTS, help="only these, in this order")
    p.add_argument("--nodes", type=int, help="simulated GPU nodes")
    p.add_argument("--lease", type=float, help="the scheduler's node lease, seconds")
    p.add_argument("--warehouse-down", type=float, help="seconds the warehouse stays down")
    p.add_argument("--folder", type=Path, help="where the stack's data and logs go "
                   "(default: a new temporary folder, kept)")
    args = p.parse_args(argv)
    changes: dict[str, object] = {}
    if args.faults:
        changes["faults"] = tuple(args.faults)
    if args.nodes:
        changes["nodes"] = args.nodes
    if args.lease:
        changes["lease_s"] = args.lease
    if args.warehouse_down:
        changes["warehouse_down_s"] = args.warehouse_down
    cfg = profile(args.profile, **changes)
    folder = args.folder or Path(tempfile.mkdtemp(prefix="gpufleet-chaos-"))
    folder.mkdir(parents=True, exist_ok=True)
    # The clients' own complaints while the broker is away go to a file, not the report.
    logging.basicConfig(filename=folder / "chaos.log", level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    t0 = time.monotonic()
    results = asyncio.run(run(cfg, folder, say=lambda line: print(line, flush=True)))
    rows = [r for res in results for r in report.rows(res, cfg)]
    print()
    print(report.table(rows, tuple(results)))
    for res in results:
        if res.error:
            print(f"{res.name}: the run itself failed: {res.error}")
    print(f"logs and data: {folder}; took {time.monotonic() - t0:.0f}s")
    print(report.last_line(results, rows))
    return 1 if report.failed(results, rows) else 0


if __name__ == "__main__":
    sys.exit(main())
