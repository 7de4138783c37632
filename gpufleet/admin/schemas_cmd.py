"""``gpufleet schemas write|check``: the JSON Schemas under deploy/schemas/."""

from __future__ import annotations

import argparse
import sys

from gpufleet import schemas


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["write", "check"])


def run(args: argparse.Namespace) -> int:
    if args.action == "write":
        for name in schemas.write():
            print(f"wrote {schemas.SCHEMA_DIR / name}")
        return 0
    stale = schemas.drift()
    for name in stale:
        print(f"drifted: {name} (run `gpufleet schemas write`)", file=sys.stderr)
    return 1 if stale else 0
