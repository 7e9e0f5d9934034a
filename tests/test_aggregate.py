"""``benchmarks/aggregate.py``: stratified bootstrap intervals, method names from a sweep's
overrides, and the command on real control run folders."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.stats
import yaml
from aggregate import Run, iqm, learning_figure, name_methods, stratified_interval, summarize

from control.train import train
from gempo.runs import compose_config
from tests.control.conftest import TINY

REPO = Path(__file__).resolve().parents[1]


def test_the_bootstrap_resamples_seeds_within_each_task():
    # every stratified resample holds three 0s and three 10s: the pooled mean is always 5;
    # pooling the seeds before resampling would give a wide interval
    low_task, high_task = np.zeros(3), np.full(3, 10.0)
    assert stratified_interval([low_task, high_task], np.mean) == [5.0, 5.0]
    pooled = stratified_interval([np.concatenate([low_task, high_task])], np.mean)
    assert pooled[0] < 3 and pooled[1] > 7


def test_one_task_intervals_match_scipy_and_one_seed_has_none():
    scores = np.array([100.0, 250.0, 300.0, 900.0, 420.0])
    stats = summarize(scores)
    expected = scipy.stats.bootstrap(
        (scores,), np.mean, n_resamples=2000, method="percentile", random_state=0
    ).confidence_interval
    assert stats["mean_ci95"] == pytest.approx([expected.low, expected.high])
    assert stats["iqm"] == pytest.approx(np.mean([250.0, 300.0, 420.0]))
    assert stats["iqm"] == pytest.approx(iqm(scores))
    assert summarize(np.array([3.0]))["mean_ci95"] is None


def _run(seed: int, overrides: list[str]) -> Run:
    return Run(
        "hopper", "gempo", seed, {"eval": 1.0}, np.zeros((1, 2)), "steps", {"overrides": overrides}
    )


def test_methods_are_named_by_the_overrides_that_differ_between_runs():
    runs = [
        _run(0, ["env=hopper", "seed=0", "agent=sac", "total_steps=1000"]),
        _run(1, ["env=hopper", "seed=1", "agent=gempo", "total_steps=1000", "resume=true"]),
        _run(2, ["env=hopper", "seed=2", "total_steps=1000"]),
    ]
    name_methods(runs, "env")
    assert [r.method for r in runs] == ["agent=sac", "agent=gempo", "gempo"]


@pytest.mark.slow
def test_the_command_tabulates_finished_control_runs_and_skips_unfinished_ones(tmp_path):
    sweep = tmp_path / "sweep"
    for seed in (0, 1):
        cfg = compose_config("control_train", ["agent=sac", *TINY, f"seed={seed}", "plot=false"])
        train(cfg, sweep / f"seed{seed}")
    unfinished = sweep / "unfinished"
    shutil.copytree(sweep / "seed0", unfinished)
    config = yaml.safe_load((unfinished / "config.yaml").read_text())
    (unfinished / "config.yaml").write_text(yaml.safe_dump({**config, "total_steps": 10**6}))

    out = tmp_path / "table" / "sweep"
    done = subprocess.run(
        [sys.executable, "benchmarks/aggregate.py", str(sweep), "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    finals = []
    for seed in (0, 1):
        metrics = pd.read_csv(sweep / f"seed{seed}" / "metrics.csv")
        finals.append(metrics[metrics["name"] == "eval/return_mean"]["value"].iloc[-1])
    (row,) = json.loads(Path(f"{out}.json").read_text())["rows"]
    assert (row["task"], row["method"], row["seeds"]) == ("inverted_pendulum", "sac", [0, 1])
    assert row["eval/return_mean"]["per_seed"] == pytest.approx(finals)
    assert row["eval/return_mean"]["mean"] == pytest.approx(np.mean(finals))
    assert "| inverted_pendulum | sac | 2 |" in Path(f"{out}.md").read_text()
    assert Path(f"{out}.png").stat().st_size > 0

    nothing = subprocess.run(
        [sys.executable, "benchmarks/aggregate.py", str(tmp_path / "table"), "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert nothing.returncode == 2
    assert (
        nothing.stderr.strip()
        == f"error: {tmp_path / 'table'}: no finished run; pass one side's sweeps"
    )


def test_a_method_has_one_colour_in_every_panel():
    # the two tasks hold different methods, so a per-panel colour cycle would give "sac" the
    # second colour on Hopper and the first on Walker2d
    curve = np.array([[1.0, 0.0], [2.0, 1.0]])
    runs = [
        Run(task, method, seed, {"return": 1.0}, curve + seed, "environment steps")
        for task, methods in {"Hopper": ["gempo", "sac"], "Walker2d": ["sac", "zeta"]}.items()
        for method in methods
        for seed in range(2)
    ]
    fig = learning_figure(runs, "return")
    colours = [
        {line.get_label().split(" (")[0]: line.get_color() for line in ax.get_lines()}
        for ax in fig.axes
    ]
    assert colours[0]["sac"] == colours[1]["sac"]
    assert len({*colours[0].values(), *colours[1].values()}) == 3
