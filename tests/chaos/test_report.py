"""The report puts each finding in the window of the fault it fell in, and sums them up."""

from __future__ import annotations

from chaos import report
from chaos.check import JobOutcome, OverCommit, SampleFinding, Window
from chaos.config import profile
from chaos.run import PhaseResult


def test_findings_land_in_their_fault_window_and_the_last_line_adds_them_up() -> None:
    steady = Window("steady", 0.0, end=10.0, recovery_s=0.0)
    kill = Window("kill-ingest", 10.0, end=20.0, recovery_s=3.5, idle=["scheduler"],
                  notes=["kill -9 ingest (pid 42)"],
                  crashes=["scheduler exited with status 1"] * 2)
    down = Window("warehouse-down", 20.0, end=30.0, recovery_s=None)
    result = PhaseResult(
        "single", [steady, kill, down],
        probe_acked=[("p", 5000), ("p", 12000), ("p", 13000), ("p", 25000)],
        sample_findings=[SampleFinding("p", 12000, 0), SampleFinding("p", 25000, 2)],
        jobs=[JobOutcome("a", 1.0, "finished", 1, 0, at=1.0),
              JobOutcome("b", 11.0, "lost", 0, 0, at=11.0),
              JobOutcome("c", 21.0, "finished", 2, 1, at=22.0),
              # submitted before the fault, its end due (and missed) during it
              JobOutcome("d", 2.0, "unfinished", 1, 0, at=15.0)],
        over=[OverCommit(22.0, "sim-0000", 3, 2000, ("c", "d"))],
    )
    cfg = profile("small")
    rows = report.rows(result, cfg)
    got = [(r.fault, r.published, r.stored, r.missing, r.duplicated, r.submitted, r.lost,
            r.jobs_duplicated, r.over, r.crashes, r.recovery) for r in rows]
    assert got == [
        ("steady", 1, 1, 0, 0, 2, 0, 0, 0, 0, "0.0"),
        ("kill-ingest", 2, 1, 1, 0, 1, 2, 0, 0, 2, "3.5"),
        ("warehouse-down", 1, 1, 0, 1, 1, 0, 1, 1, 0, "never"),
    ]
    assert rows[0].broken == []
    assert rows[1].broken == ["1 acked samples missing", "1 jobs lost (e.g. b)",
                              "1 jobs placed, never finished (e.g. d)",
                              "alive but idle: scheduler"]
    assert rows[1].notes == ["kill -9 ingest (pid 42)", "scheduler exited with status 1 (2x)"]
    assert "1 GPU over-commits (e.g. sim-0000 gpu 3: 2000/1000 by c, d)" in rows[2].broken
    assert "not ready within 60s" in rows[2].broken
    assert report.last_line([result], rows) == (
        "chaos: 2 faults, 4 samples, 4 jobs, 3 lost, 2 duplicated, 1 over-committed")
    assert report.failed([result], rows)
    text = report.table(rows)
    assert "single/kill-ingest: 1 acked samples missing" in text
    assert "single/kill-ingest: kill -9 ingest (pid 42)" in text
