"""The fault suite's small version, in `make test`: the stack on free ports under load, a
few faults, and the report's numbers read back from the bus and the warehouse.

It asserts every invariant, as `make chaos` does, over a shorter list of faults."""

from __future__ import annotations

from pathlib import Path

import pytest

from chaos import report
from chaos.config import profile
from chaos.run import run

pytestmark = pytest.mark.integration

FAULTS = ("kill-scheduler", "kill-ingest", "broker-sigkill", "warehouse-down", "fleet-down",
          "poison")


async def test_small_fault_run(tmp_path: Path) -> None:
    cfg = profile("small", faults=FAULTS)
    lines: list[str] = []
    results = await run(cfg, tmp_path / "chaos", say=lines.append)
    assert len(results) == 1
    result = results[0]
    assert not result.error, "\n".join(lines)
    rows = report.rows(result, cfg)
    print("\n" + report.table(rows, tuple(results)) + "\n" + report.last_line(results, rows))

    assert [r.fault for r in rows] == ["steady", *FAULTS]
    assert len(result.probe_acked) > 20, "probe samples were published and acknowledged"
    assert len(result.jobs) > 10, "jobs were submitted and acknowledged"
    assert any(j.outcome == "finished" for j in result.jobs), "jobs ran to their end"
    for r in rows:
        assert r.recovery != "never", f"{r.fault}: not every service came back"
    # exactly once for acknowledged samples; no job placed twice; no GPU over-committed
    assert sum(r.missing for r in rows) == 0, [f for f in result.sample_findings][:5]
    assert sum(r.duplicated for r in rows) == 0
    assert result.fleet_duplicates == 0
    assert sum(r.jobs_duplicated for r in rows) == 0
    assert result.over == [], result.over[:5]
    broken = [f"{r.fault}: {b}" for r in rows for b in r.broken]
    assert not report.failed(results, rows), broken
    assert report.last_line(results, rows).startswith(
        f"chaos: {len(FAULTS)} faults, {len(result.probe_acked)} samples, {len(result.jobs)} jobs")
