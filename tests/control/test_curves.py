"""Reading run folders and benchmark JSON into one table, and the summary over seeds."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf

from control.curves import (
    find_runs,
    load_benchmark_curves,
    load_runs,
    scheme_label,
    seed_summary,
)
from control.metrics import FIELDS
from gempo.errors import GempoError

LINEAR = {"_target_": "gempo.weights.LinearWeight", "beta": 1.0}


def fake_run(folder: Path, seed: int, returns: list[float], weight: dict | None = None) -> Path:
    """A run folder as control.train leaves it: config.yaml + long-format metrics.csv."""
    folder.mkdir(parents=True)
    cfg = {"env": {"name": "pendulum"}, "agent": {"name": "gempo"}, "seed": seed}
    OmegaConf.save(OmegaConf.create({**cfg, "weight": weight or LINEAR}), folder / "config.yaml")
    rows = [
        {"env_step": 100 * (i + 1), "grad_updates": 50 * i, "name": "eval/return_mean", "value": r}
        for i, r in enumerate(returns)
    ]
    rows.append({"env_step": 100, "grad_updates": 0, "name": "train/critic/loss", "value": 9.0})
    pd.DataFrame(rows, columns=FIELDS).to_csv(folder / "metrics.csv", index=False)
    return folder


def test_scheme_labels_name_the_weight_function_and_its_parameters():
    assert scheme_label("gempo", LINEAR) == "gempo (linear, beta=1.0)"
    assert scheme_label("gempo", "exp") == "gempo (exp)"
    assert scheme_label("sac", LINEAR) == "sac"


def test_runs_are_found_loaded_and_summarized_over_seeds(tmp_path):
    fake_run(tmp_path / "sweep" / "seed=0", 0, [1.0, 3.0])
    fake_run(tmp_path / "sweep" / "seed=1", 1, [3.0, 5.0, 7.0])
    fake_run(tmp_path / "sweep" / "exp", 0, [2.0], {"_target_": "gempo.weights.ExpWeight"})
    (tmp_path / "sweep" / "not_a_run").mkdir()
    runs = find_runs(tmp_path / "sweep", tmp_path / "missing")
    assert [r.name for r in runs] == ["exp", "seed=0", "seed=1"]

    summary = seed_summary(load_runs(runs)).set_index(["scheme", "env_step"])
    linear = summary.loc["gempo (linear, beta=1.0)"]
    assert linear["mean"].tolist() == [2.0, 4.0, 7.0]
    assert linear["std"].tolist() == [1.0, 1.0, 0.0]
    assert linear["seeds"].tolist() == [2, 2, 1]
    assert summary.loc[("gempo (exp)", 100), "mean"] == 2.0


def test_no_runs_give_an_empty_table_and_a_foreign_config_a_one_line_error(tmp_path):
    assert load_runs([]).empty and seed_summary(load_runs([])).empty
    run = fake_run(tmp_path / "run", 0, [1.0])
    OmegaConf.save(OmegaConf.create({"model": {}}), run / "config.yaml")
    with pytest.raises(GempoError, match="not a control.train config"):
        load_runs([run])


def test_benchmark_json_curves_read_like_runs(tmp_path):
    curve = {"env_step": [1000, 2000], "return_mean": [5.0, 45.0], "return_std": [0.0, 2.5]}
    raw = {"env_step": [1000, 2000], "return_mean": [4.0, 40.0], "return_std": [1.0, 1.0]}
    payload = {"env": "InvertedPendulum-v5", "agent": "sac", "weight": None, "seed": 0}
    (tmp_path / "control_learning").mkdir()
    (tmp_path / "control_learning" / "ip_sac_seed0.json").write_text(
        json.dumps({**payload, "curves": {"eval": curve, "eval_raw": raw}})
    )
    (tmp_path / "control_throughput_cpu.json").write_text("{}")  # not a curve: ignored
    table = load_benchmark_curves(tmp_path)
    summary = seed_summary(table)
    assert summary["scheme"].unique().tolist() == ["sac"]
    assert summary["mean"].tolist() == [5.0, 45.0]
    assert seed_summary(table, "eval/return_std")["mean"].tolist() == [0.0, 2.5]
    assert seed_summary(table, "eval_raw/return_mean")["mean"].tolist() == [4.0, 40.0]
    assert load_benchmark_curves(tmp_path / "missing").empty
