"""The simulator on a small sample of the shipped trace."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from gpufleet.cli import main
from services.scheduler.demo_cmd import demo_spec
from services.scheduler.sim import variants
from services.scheduler.sim.inflation import inflate, sample
from services.scheduler.sim.policies import profile_for
from services.scheduler.sim.replay import replay
from services.scheduler.sim.trace import TraceError, load_nodes, load_paper, load_tasks, read_trace

NODES = load_nodes()[::12]  # about a hundred nodes
TASKS = load_tasks()[:800]


def test_the_shipped_trace_is_complete() -> None:
    assert len(load_nodes()) == 1213
    assert len(load_tasks()) == 8152
    assert load_paper()["FGD"][130] == pytest.approx(95.391)


@pytest.mark.parametrize(("name", "target"), [
    ("above the trace's demand: every task, then more drawn", 1.3),
    ("below it: tasks dropped at random", 0.4),
])
def test_sampling_stops_within_one_task_of_the_target(name: str, target: float) -> None:
    capacity = sum(t.demand_milli for t in TASKS)
    tasks = sample(TASKS, capacity, target, np.random.default_rng(0))
    demand = sum(t.demand_milli for t in tasks)
    assert target * capacity - 8000 < demand <= target * capacity, name
    names = {t.name for t in tasks}
    assert (names == {t.name for t in TASKS}) == (target > 1), name
    if target > 1:  # the trace itself comes first, each task once, in a new order
        assert sorted(t.name for t in tasks[:len(TASKS)]) == sorted(t.name for t in TASKS)
        assert [t.name for t in tasks[:len(TASKS)]] != [t.name for t in TASKS]


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
    assert "min-max@40" in out and plot.stat().st_size > 1000


def test_demo_jobs_are_valid_and_runnable() -> None:
    rng = np.random.default_rng(1)
    for task in TASKS[:50]:
        if task.num_gpu == 0:
            continue
        spec = demo_spec(task, rng, 60, 300)
        assert 60 <= (spec.sim_duration_s or 0) <= 300
        assert spec.gpus >= 1 and 0 < spec.gpu_milli <= 1000
        assert spec.est_runtime_s == spec.sim_duration_s


HEADER = "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec\n"


@pytest.mark.parametrize(("row", "reason"), [
    ("t,1000,100,-1,1000,", "Expected `int` >= 0 - at `$.gpus`"),  # the contract refuses it
    ("t,1000,100,1,0,", "gpu_milli=0"),
    ("t,1000,100,1,-300,", "Expected `int` >= 0 - at `$.gpu_milli`"),
    ("t,1000,100,1,1500,", "more than one GPU"),
    ("t,1000,100,1,500,H999", "unknown GPU model H999"),
    ("t,-5,100,1,500,", "cpu_milli"),
    ("t,many,100,1,500,", "cpu_milli='many' is not a number"),
    ("t,1000,100,16,1000,", "the largest node has 8"),
    ("t,1000,100,0,300,", "a job needs at least 1 GPU"),
])
def test_trace_rows_get_the_services_reasons(tmp_path: Path, row: str, reason: str) -> None:
    path = tmp_path / "t.csv"
    path.write_text(HEADER + "ok,1000,100,1,500,\nok2,1000,100,0,0,\n" + row + "\n")
    trace = read_trace(path, load_nodes())
    assert [t.name for t in trace.tasks] == ["ok", "ok2"]
    assert len(trace.rejected) == 1 and trace.rejected[0].line == 4
    assert reason in trace.rejected[0].reason


def test_a_duplicate_name_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text(HEADER + "a,1,1,1,100,\na,1,1,1,100,\n")
    assert "duplicate" in read_trace(path).rejected[0].reason


def test_a_missing_column_fails_with_one_clear_line(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "t.csv"
    path.write_text("name,cpu_milli,num_gpu\na,1,1\n")
    with pytest.raises(TraceError, match="missing column"):
        read_trace(path)
    assert main(["sim", "--tasks", str(path), "--seeds", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing column(s) memory_mib, gpu_milli" in err[0]


def test_the_paper_column_is_only_for_its_own_trace(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "other.csv"
    path.write_text(HEADER + "".join(f"t{i},1000,100,1,{100 + i},\n" for i in range(300)))
    assert main(["sim", "--tasks", str(path), "--policy", "random", "--seeds", "1",
                 "--target", "20", "--plot", str(tmp_path / "p.png")]) == 0
    captured = capsys.readouterr()
    table = captured.out.split("plot:")[0]
    assert "paper" not in table and "random" in table


ALL = load_tasks()
GPU = [t for t in ALL if t.num_gpu > 0]


@pytest.mark.parametrize(("variant", "measure", "expected"), [
    ("share:100", lambda ts: np.mean([t.gpu_milli < 1000 for t in ts if t.num_gpu]), 1.0),
    ("share:40", lambda ts: np.mean([t.gpu_milli < 1000 for t in ts if t.num_gpu]), 0.4),
    ("multigpu:50", lambda ts: sum(t.demand_milli for t in ts if t.num_gpu > 1)
     / sum(t.demand_milli for t in ts), 0.5),
    ("gpuspec:33", lambda ts: np.mean([bool(t.models) for t in ts if t.num_gpu]), 0.33),
    ("cpu:200", lambda ts: sum(t.cpu_milli for t in ts if not t.num_gpu)
     / sum(t.cpu_milli for t in ALL if not t.num_gpu), 2.0),
])
def test_variants_have_the_mix_they_ask_for(variant: str, measure: object,
                                            expected: float) -> None:
    tasks = variants.make(ALL, load_nodes(), variant, seed=1)
    assert measure(tasks) == pytest.approx(expected, abs=0.05 * max(expected, 1))  # type: ignore[operator]
    assert len([t for t in tasks if t.num_gpu]) == len(GPU)
    assert tasks == variants.make(ALL, load_nodes(), variant, seed=1)


def test_a_variant_round_trips_through_csv(tmp_path: Path) -> None:
    tasks = variants.make(ALL[:500], load_nodes(), "gpuspec:50", seed=2)
    variants.write(tasks, tmp_path / "v.csv")
    again = read_trace(tmp_path / "v.csv", load_nodes())
    assert not again.rejected
    assert [(t.name, t.num_gpu, t.gpu_milli, t.models) for t in again.tasks] == [
        (t.name, t.num_gpu, t.gpu_milli, t.models) for t in tasks]


@pytest.mark.parametrize("bad", ["share", "share:x", "nope:10", "share:120"])
def test_a_bad_variant_is_refused(bad: str) -> None:
    with pytest.raises(variants.VariantError, match="FAMILY:PERCENT"):
        variants.make(ALL, load_nodes(), bad)
