"""Learning curves of many ``control.train`` runs, grouped by env and scheme and summarized over
seeds (the ``notebooks/control_curves.ipynb`` figures).

A run is a folder with ``config.yaml`` and the long-format ``metrics.csv``
(``env_step, grad_updates, name, value``) that :class:`control.metrics.MetricsLogger` writes:
``outputs/control/<env>/<time>/`` of single runs and ``multirun/control/<time>/<overrides>/`` of
sweeps. The learning benchmark's ``benchmarks/results/control_learning/*.json`` files hold the
eval curves of one run each and read into the same table.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import pandas as pd
from omegaconf import OmegaConf

from gempo.errors import GempoError
from gempo.weights import WEIGHT_FUNCTIONS

RUN_COLUMNS = ("env", "scheme", "seed", "run")
"""Columns that identify a run in :func:`load_runs` / :func:`load_benchmark_curves` tables."""


def find_runs(*roots: str | Path) -> list[Path]:
    """Run folders (holding both ``metrics.csv`` and ``config.yaml``) anywhere under ``roots``;
    roots that do not exist are skipped. Sorted, without duplicates."""
    found = {
        csv.parent
        for root in map(Path, roots)
        if root.is_dir()
        for csv in root.rglob("metrics.csv")
        if (csv.parent / "config.yaml").is_file()
    }
    return sorted(found)


def scheme_label(agent: str, weight: dict | str | None) -> str:
    """``sac``, or ``gempo (linear, beta=1.0)``: the agent and, for GeMPO, its weight function
    (config name and parameters, or just the name)."""
    if not agent.startswith("gempo") or weight is None:
        return agent
    if isinstance(weight, str):
        return f"{agent} ({weight})"
    cls = str(weight.get("_target_", "")).rsplit(".", 1)[-1]
    names = {c.__name__: n for n, c in WEIGHT_FUNCTIONS.items()}
    params = [f"{k}={v}" for k, v in weight.items() if not str(k).startswith("_")]
    return f"{agent} ({', '.join([names.get(cls, cls), *params])})"


def load_run(run_dir: str | Path) -> pd.DataFrame:
    """One run's metrics with its identity: columns ``env, scheme, seed, run`` +
    ``env_step, grad_updates, name, value``."""
    run_dir = Path(run_dir)
    cfg = OmegaConf.to_container(OmegaConf.load(run_dir / "config.yaml"))
    try:
        env, agent, seed = cfg["env"]["name"], cfg["agent"]["name"], int(cfg["seed"])
    except (KeyError, TypeError) as err:
        raise GempoError(f"{run_dir}/config.yaml is not a control.train config ({err})") from None
    metrics = pd.read_csv(run_dir / "metrics.csv")
    return metrics.assign(
        env=env, scheme=scheme_label(agent, cfg.get("weight")), seed=seed, run=str(run_dir)
    )[[*RUN_COLUMNS, "env_step", "grad_updates", "name", "value"]]


def load_runs(run_dirs: Iterable[str | Path]) -> pd.DataFrame:
    """:func:`load_run` of each folder, concatenated (an empty table for none)."""
    frames = [load_run(d) for d in run_dirs]
    if not frames:
        return pd.DataFrame(columns=[*RUN_COLUMNS, "env_step", "grad_updates", "name", "value"])
    return pd.concat(frames, ignore_index=True)


def load_benchmark_curves(results_dir: str | Path) -> pd.DataFrame:
    """The eval curves in ``control_learning/*.json`` under ``results_dir`` (one run each, as
    ``benchmarks/control_learning.py`` writes them) as rows of the :func:`load_runs` table
    (metrics ``eval/...`` and ``eval_raw/...`` ``return_mean`` and ``return_std``; env by its
    gymnasium id, e.g. ``Hopper-v5``)."""
    frames = []
    for path in sorted((Path(results_dir) / "control_learning").glob("*.json")):
        data = json.loads(path.read_text())
        for prefix, curve in data["curves"].items():
            long = pd.DataFrame(curve).melt(
                id_vars="env_step", value_vars=["return_mean", "return_std"], var_name="name"
            )
            frames.append(
                long.assign(
                    name=f"{prefix}/" + long["name"],
                    env=data["env"],
                    scheme=scheme_label(data["agent"], data.get("weight")),
                    seed=int(data["seed"]),
                    run=str(path),
                    grad_updates=float("nan"),
                )
            )
    return load_runs([]) if not frames else pd.concat(frames, ignore_index=True)


def seed_summary(runs: pd.DataFrame, metric: str = "eval/return_mean") -> pd.DataFrame:
    """Mean and standard deviation over runs (seeds) of ``metric`` at each logged env step, per
    env and scheme: columns ``env, scheme, env_step, mean, std, seeds`` (``seeds``: the number
    of runs with a value at that step; ``std`` is 0 for one).

    A run logging the metric twice at one step (a resumed run) counts its last value.
    """
    rows = runs[runs["name"] == metric]
    per_run = rows.groupby([*RUN_COLUMNS, "env_step"], as_index=False)["value"].last()
    summary = per_run.groupby(["env", "scheme", "env_step"])["value"].agg(
        mean="mean", std=lambda v: v.std(ddof=0), seeds="count"
    )
    return summary.reset_index()
