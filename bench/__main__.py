"""Run every benchmark and print one report table (also written to bench/out/report.md)."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import time
from pathlib import Path

from bench.report import Result, machine, table


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m bench")
    p.add_argument("only", nargs="*", help="run only these benchmarks (e.g. scheduler)")
    p.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    args = p.parse_args()
    here = Path(__file__).parent
    names = sorted(m.name for m in pkgutil.iter_modules([str(here)]) if m.name.startswith("bench_"))
    if args.only:
        names = [n for n in names if n.removeprefix("bench_") in args.only]
    results: list[Result] = []
    for name in names:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        start = time.perf_counter()
        results.extend(importlib.import_module(f"bench.{name}").run(args.quick))
        print(f"  {name}: {time.perf_counter() - start:.1f}s", file=sys.stderr, flush=True)
    report = f"# gpufleet benchmarks\n\nMachine: {machine()}\n\n{table(results)}\n"
    out = here / "out"
    out.mkdir(exist_ok=True)
    (out / "report.md").write_text(report)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
