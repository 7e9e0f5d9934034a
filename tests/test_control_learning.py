"""``benchmarks/control_learning.py``: result files read as runs, with the final return as the
headline and the mean of the last evaluations next to it."""

from __future__ import annotations

import argparse
import json

import control_learning
import pytest
from control_learning import LAST_EVALS, RESULTS, as_runs, compose_cfg, report, run_ours
from omegaconf import OmegaConf


def result(seed: int, evals: list[float], raws: list[float]) -> dict:
    steps = [10_000 * (i + 1) for i in range(len(evals))]
    return {
        "env": "Walker2d-v5",
        "agent": "gempo_cpu",
        "seed": seed,
        "env_steps": steps[-1],
        "wall_s_this_process": 60.0,
        "resumed": False,
        "machine": "test",
        "curves": {
            "eval": {"env_step": steps, "return_mean": evals},
            "eval_raw": {"env_step": steps, "return_mean": raws},
        },
    }


def test_the_final_return_is_the_headline_and_the_last_evaluations_are_averaged():
    assert LAST_EVALS == 3
    (run,) = as_runs([result(0, [1.0, 100.0, 200.0, 300.0, 1000.0], [5.0, 6.0, 7.0, 8.0, 9.0])])
    assert run.score == 1000.0  # the protocol's final return, not an average
    assert run.finals == {"eval": 1000.0, "eval_raw": 9.0, "eval_last3": 500.0}
    assert run.meta["jobs"] == 2  # files written before the runs at a time were recorded


def test_a_report_over_some_seeds_reads_only_those_and_writes_its_own_files(tmp_path, monkeypatch):
    """``report --seeds 0 1`` is the same-seed table next to the all-seed one, not over it."""
    results = tmp_path / "results" / "control_learning"
    results.mkdir(parents=True)
    for seed in (0, 1, 3):
        data = result(seed, [1.0, 100.0 * (seed + 1)], [1.0, 2.0])
        (results / f"walker2d_gempo_cpu_seed{seed}.json").write_text(json.dumps(data))
    monkeypatch.setattr(control_learning, "RESULTS", results)
    monkeypatch.setattr(control_learning, "FIGURE", tmp_path / "figures" / "control_learning.png")
    report(argparse.Namespace(seeds=None))
    report(argparse.Namespace(seeds=[0, 1]))
    every = json.loads((results.parent / "control_learning.json").read_text())
    some = json.loads((results.parent / "control_learning_seeds0-1.json").read_text())
    assert every[0]["seeds"] == [0, 1, 3] and some[0]["seeds"] == [0, 1]
    assert some[0]["eval"]["per_seed"] == [100.0, 200.0]
    assert "--seeds 0 1" in (results.parent / "control_learning_seeds0-1.md").read_text()
    assert (tmp_path / "figures" / "control_learning_seeds0-1.png").is_file()


def test_a_run_records_the_resolved_settings_it_ran_with(tmp_path):
    """A result file names the numbers that ran, not just the preset's name, so it stays true
    when a preset's numbers change."""
    tiny = ["agent.actor.group_size=4", "learning_starts=50", "agent.actor_starts=100"]
    tiny += ["eval_episodes=1", "batch_size=16"]
    data = run_ours("hopper", "gempo_cpu", 0, 200, 100, tmp_path, ("n4", tiny))
    assert data["agent"] == "gempo_cpu+n4"
    assert data["settings"]["agent"]["actor"]["group_size"] == 4
    assert data["settings"]["agent"]["name"] == "gempo_cpu"
    assert data["settings"]["env"]["id"] == "Hopper-v5"
    json.dumps(data)  # plain values, ready for the result file


@pytest.mark.parametrize(
    ("preset", "lever"),
    [("gempo_cpu_n16", "lr3e-4+n16"), ("gempo_cpu_refresh100", "lr3e-4+refresh100")],
)
def test_a_preset_is_the_lever_its_learning_runs_measured(preset, lever):
    """The docs report the rows ``gempo_cpu+<lever>`` as ``agent=<preset>``'s numbers: the
    preset composes to the settings those runs had, the name aside, on every task."""
    files = sorted(RESULTS.glob(f"*_gempo_cpu+{lever}_seed*.json"))
    assert files, f"no result files of {lever} in benchmarks/results/control_learning"
    for file in files:
        record = json.loads(file.read_text())
        overrides = [o for o in record["overrides"] if o.startswith("agent.")]
        env = record["overrides"][0].removeprefix("env=")
        ran, _ = compose_cfg(env, "gempo_cpu", record["seed"], 100_000, 10_000, overrides)
        composed, _ = compose_cfg(env, preset, record["seed"], 100_000, 10_000)
        ran.agent.name = composed.agent.name
        assert OmegaConf.to_container(ran, resolve=True) == OmegaConf.to_container(
            composed, resolve=True
        ), file.name
