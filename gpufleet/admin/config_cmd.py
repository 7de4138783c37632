"""``gpufleet config [SERVICE]``: print the effective settings."""

from __future__ import annotations

import argparse
import importlib.util
import json

from gpufleet.config import SETTINGS, describe, load, settings_class


def available() -> list[str]:
    return sorted(s for s, target in SETTINGS.items() if _exists(target.partition(":")[0]))


def _exists(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("service", nargs="?", default="bus", choices=available())
    p.add_argument("--json", action="store_true", help="print JSON instead of NAME=value lines")


def run(args: argparse.Namespace) -> int:
    values = describe(load(settings_class(args.service)))
    if args.json:
        print(json.dumps(values, indent=2))
    else:
        for k, v in values.items():
            print(f"{k}={v}")
    return 0
