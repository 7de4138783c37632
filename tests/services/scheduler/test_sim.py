"""The simulator on a small sample of the shipped trace."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from gpufleet.cli import main
from services.scheduler.demo_cmd import demo_spec
from services.scheduler.sim.inflation import inflate, sample
from services.scheduler.sim.policies import profile_for
from services.scheduler.sim.replay import replay
from services.scheduler.sim.trace import load_nodes, load_paper, load_tasks

NODES = load_nodes()[::12]  # about a hundred nodes
TASKS = load_tasks()[:800]


def test_the_shipped_trace_is_complete() -> None:
    assert len(load_nodes()) == 1213
    assert len(load_tasks()) == 8152
    assert load_paper()["FGD"][130] == pytest.approx(95.391)


def test_sampling_reaches_the_target_demand() -> None:
    tasks = sample(TASKS, 100_000, 1.3, np.random.default_rng(0))
    assert 130_000 <= sum(t.demand_milli for t in tasks) < 130_000 + 8000


@pytest.mark.parametrize("policy", ["random", "bestfit", "fgd"])
def test_inflation_curve_is_monotone_and_bounded(policy: str) -> None:
    curve = inflate(policy, profile_for(policy, TASKS), NODES, TASKS, seed=0, target_pct=110)
    ratios = [r for _, r in curve.points]
    assert [p for p, _ in curve.points] == list(range(111))
    assert all(0 <= r <= 100 for r in ratios)
    assert ratios == sorted(ratios)
    assert curve.at(110) > 60


def test_fgd_beats_random_on_the_sample() -> None:
    def at(policy: str) -> float:
        return float(np.mean([inflate(policy, profile_for(policy, TASKS), NODES, TASKS, s,
                                      120).at(120) for s in range(2)]))
    assert at("fgd") > at("random")


@pytest.mark.parametrize("tick_s", [0.0, 30.0])
def test_replay_reports_times_for_every_job(tick_s: float) -> None:
    r = replay("bestfit", NODES[:10], TASKS[:200], speedup=5000, tick_s=tick_s)
    assert r.jobs and all(j.start is not None and j.end is not None for j in r.jobs)
    assert all(j.queue_s is not None and j.queue_s >= 0 for j in r.jobs)
    assert 0 < r.utilization_pct <= 100


def test_sim_command_json_and_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["sim", "--policy", "bestfit", "--seeds", "1", "--sample", "300", "--target",
                 "60", "--mode", "both", "--speedup", "5000", "--json"])
    raw = json.loads(capsys.readouterr().out)
    assert code == 0
    assert raw["inflation"][0]["policy"] == "bestfit"
    assert raw["inflation"][0]["points"][-1]["arrived_demand_pct"] == 60
    assert raw["replay"][0]["jobs"][0]["jct_s"] is not None
    plot = tmp_path / "p.png"
    assert main(["sim", "--policy", "random", "--seeds", "1", "--sample", "300", "--target", "40",
                 "--plot", str(plot)]) == 0
    out = capsys.readouterr().out
    assert "paper@40" in out and plot.stat().st_size > 1000


def test_demo_jobs_are_valid_and_runnable() -> None:
    rng = np.random.default_rng(1)
    for task in TASKS[:50]:
        if task.num_gpu == 0:
            continue
        spec = demo_spec(task, rng, 60, 300)
        assert 60 <= (spec.sim_duration_s or 0) <= 300
        assert spec.gpus >= 1 and 0 < spec.gpu_milli <= 1000
        assert spec.est_runtime_s == spec.sim_duration_s
