"""Benchmarks. ``python -m bench`` runs every ``bench/bench_*.py`` and prints one report.

A benchmark module has ``run(quick: bool) -> list[Result]``.
"""
