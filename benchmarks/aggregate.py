"""Seed aggregation for sweeps of either app, as RL benchmarks report them.

    python benchmarks/aggregate.py multirun/control/2026-11-29_10-00-00 --out results/hopper_sweep
    python benchmarks/aggregate.py multirun/dna_finetune --out results/dna_weights_sweep

Finds every finished run below the given folders: a control run (``config.yaml`` and
``metrics.csv``, written by ``python -m control.train``) or a DNA fine-tuning run
(``summary.json``, written by ``python -m dna.finetune``). Runs are grouped by task (control:
the env; DNA: the cell type) and method (the run's command-line overrides other than the
task and the seed, leaving out those shared by every run). Writes ``<out>.md``, ``<out>.json``
and ``<out>.png``: per task and method, the final score's mean and interquartile mean (IQM)
over seeds with 95% stratified percentile-bootstrap intervals, the other final metrics' means,
and the learning curves (mean over seeds with a 95% bootstrap band).

The score: control, the last evaluation return (``eval/``: each agent's evaluation rule);
DNA, the ground-truth activity of the final designs (simulated world) when there is one, else
the eval oracle's. The stratified bootstrap resamples seeds within each task (``rliable``'s
``StratifiedBootstrap``); it is computed with ``scipy.stats.bootstrap``, one sample per task,
because ``rliable`` 1.2's interval code does not run with the current ``arch`` (8.x).
The control learning benchmark (``benchmarks/control_learning.py report``) tabulates with
these functions too.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.stats
import yaml
from matplotlib import colormaps
from matplotlib.figure import Figure

from gempo.errors import GempoError, exit_on_user_error

CONFIDENCE = 0.95
RESAMPLES = 2000
CONTROL_SCORES = ("eval/return_mean", "eval_raw/return_mean")
DNA_SCORES = ("true_activity", "pred_activity", "pred_activity_ft", "pred_activity_audit")
DNA_METRICS = (
    *DNA_SCORES,
    "true_top_share",
    "oracle_gap",
    "true_atac",
    "atac_acc",
    "kmer3_corr",
    "motif_corr",
    "app_log_lik",
    "hamming",
    "distinct_10mer",
)
"""Final metrics reported per side, the headline first (DNA: ground truth first, then the
eval oracle, then the fine-tune oracle, the share of designs whose truth is above the data's top
0.1% and the eval oracle's excess over the truth, then naturalness and diversity)."""
TASK_KEYS = {"control": "env", "dna": "cell"}
NOT_METHOD = ("seed", "resume", "overwrite", "progress", "plot", "profile", "device")
"""Overrides that do not make a run another method."""


@dataclass
class Run:
    """One finished run: its task, method and seed, final metrics (the headline score
    first) and learning curve ``(points, 2)``: x (env steps or oracle calls), score."""

    task: str
    method: str
    seed: int
    finals: dict[str, float]
    curve: np.ndarray
    x_label: str
    meta: dict = field(default_factory=dict)

    @property
    def score(self) -> float:
        return next(iter(self.finals.values()))


def iqm(scores: np.ndarray, axis: int = -1) -> np.ndarray:
    """Interquartile mean: the mean of the middle 50% of the scores along ``axis``."""
    return scipy.stats.trim_mean(scores, 0.25, axis=axis)


def stratified_interval(
    samples: Sequence[np.ndarray], statistic: Callable[..., np.ndarray]
) -> list[float] | None:
    """95% percentile-bootstrap interval of ``statistic`` over the pooled ``samples`` (one
    array of seeds per task), resampling seeds within each task; None with one seed."""
    if sum(len(s) for s in samples) < 2 or all(len(s) < 2 for s in samples):
        return None

    def pooled(*resampled: np.ndarray, axis: int = -1) -> np.ndarray:
        return statistic(np.concatenate(resampled, axis=axis), axis=axis)

    result = scipy.stats.bootstrap(
        tuple(np.asarray(s, dtype=float) for s in samples),
        pooled,
        n_resamples=RESAMPLES,
        confidence_level=CONFIDENCE,
        method="percentile",
        random_state=0,
    )
    return [float(result.confidence_interval.low), float(result.confidence_interval.high)]


def summarize(scores: np.ndarray) -> dict[str, float | list[float] | None]:
    """Mean and IQM of one task's seeds ``(seeds,)`` with their 95% intervals."""
    return {
        "mean": float(np.mean(scores)),
        "mean_ci95": stratified_interval([scores], np.mean),
        "iqm": float(iqm(scores)),
        "iqm_ci95": stratified_interval([scores], iqm),
    }


def group(runs: Iterable[Run]) -> dict[tuple[str, str], list[Run]]:
    """Runs by (task, method), seeds in order."""
    out: dict[tuple[str, str], list[Run]] = {}
    for run in sorted(runs, key=lambda r: (r.task, r.method, r.seed)):
        out.setdefault((run.task, run.method), []).append(run)
    return out


def table(runs: Sequence[Run]) -> list[dict]:
    """Per task and method: seeds, every final metric's mean, and the headline score's mean
    and IQM with 95% intervals (also for every other final metric)."""
    rows = []
    for (task, method), members in group(runs).items():
        row: dict = {"task": task, "method": method, "seeds": [r.seed for r in members]}
        for name in members[0].finals:
            values = np.asarray([r.finals.get(name, np.nan) for r in members], dtype=float)
            values = values[np.isfinite(values)]
            if len(values):
                row[name] = {**summarize(values), "per_seed": values.tolist()}
        rows.append(row)
    return rows


def interval_text(stats: dict, key: str = "mean", fmt: str = ".0f") -> str:
    """``value [low, high]`` in the format ``fmt`` (``(1 seed)`` when there is no interval)."""
    value, ci = stats[key], stats[f"{key}_ci95"]
    text = f"{value:{fmt}}"
    return text + (f" [{ci[0]:{fmt}}, {ci[1]:{fmt}}]" if ci else " (1 seed)")


def markdown(rows: Sequence[dict], metrics: Sequence[str], fmt: str = ".0f") -> str:
    """A Markdown table: the first metric as mean [95% CI] and IQM [95% CI], the others as
    mean [95% CI]."""
    head, *rest = metrics
    lines = [
        f"| task | method | seeds | {head}: mean [95% CI] | {head}: IQM [95% CI] | "
        + "".join(f"{m}: mean [95% CI] | " for m in rest).rstrip(),
        "|---|---|---|---|---|" + "---|" * len(rest),
    ]
    for row in rows:
        cells = [
            interval_text(row[head], "mean", fmt) if head in row else "–",
            interval_text(row[head], "iqm", fmt) if head in row else "–",
            *(interval_text(row[m], "mean", fmt) if m in row else "–" for m in rest),
        ]
        lines.append(
            f"| {row['task']} | {row['method']} | {len(row['seeds'])} | " + " | ".join(cells) + " |"
        )
    return "\n".join(lines) + "\n"


def curve_band(curves: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """x, the mean over seeds and its 95% bootstrap band ``(2, points)`` (None with one
    seed), on the points every curve has (curves ``(points, 2)``)."""
    length = min(len(c) for c in curves)
    x, y = curves[0][:length, 0], np.stack([c[:length, 1] for c in curves])
    if len(curves) < 2:
        return x, y.mean(0), None
    ci = scipy.stats.bootstrap(
        (y,),
        np.mean,
        axis=0,
        n_resamples=RESAMPLES,
        confidence_level=CONFIDENCE,
        method="percentile",
        random_state=0,
    ).confidence_interval
    return x, y.mean(0), np.stack([ci.low, ci.high])


def learning_figure(runs: Sequence[Run], y_label: str) -> Figure:
    """Learning curves, one panel per task: mean over seeds with its 95% bootstrap band; a
    method has one colour in every panel."""
    grouped = group(runs)
    tasks = sorted({task for task, _ in grouped})
    methods = sorted({method for _, method in grouped})
    palette = colormaps["tab10" if len(methods) <= 10 else "tab20"].colors
    colour = {method: palette[i % len(palette)] for i, method in enumerate(methods)}
    fig = Figure(figsize=(5 * len(tasks), 3.8))
    axes = np.atleast_1d(fig.subplots(1, len(tasks)))
    for ax, task in zip(axes, tasks, strict=True):
        for (t, method), members in grouped.items():
            if t != task:
                continue
            x, mean, band = curve_band([r.curve for r in members])
            seeds = f"{len(members)} seed" + ("s" if len(members) > 1 else "")
            ax.plot(x, mean, color=colour[method], label=f"{method} ({seeds})")
            if band is not None:
                ax.fill_between(x, band[0], band[1], color=colour[method], alpha=0.2)
        ax.set_title(task)
        ax.set_xlabel(members[0].x_label)
        ax.set_ylabel(y_label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot(runs: Sequence[Run], path: Path, y_label: str) -> Path:
    """``learning_figure`` written to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    learning_figure(runs, y_label).savefig(path, dpi=120)
    return path


def _overrides(run_dir: Path) -> list[str]:
    file = run_dir / ".hydra" / "overrides.yaml"
    return list(yaml.safe_load(file.read_text()) or []) if file.is_file() else []


def read_control_run(run_dir: Path) -> Run:
    """A finished ``control.train`` run folder."""
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    metrics = pd.read_csv(run_dir / "metrics.csv")
    finals = {}
    for name in CONTROL_SCORES:
        rows = metrics[metrics["name"] == name]
        if len(rows):
            finals[name] = float(rows["value"].iloc[-1])
    curve = metrics[metrics["name"] == CONTROL_SCORES[0]][["env_step", "value"]].to_numpy()
    return Run(
        task=config["env"]["name"],
        method=config["agent"]["name"],
        seed=int(config["seed"]),
        finals=finals,
        curve=curve.astype(float),
        x_label="environment steps",
        meta={"dir": str(run_dir), "overrides": _overrides(run_dir)},
    )


def read_dna_run(run_dir: Path) -> Run:
    """A finished ``dna.finetune`` run folder (its final model's row)."""
    summary = json.loads((run_dir / "summary.json").read_text())
    row = summary["rows"]["finetuned"]
    finals = {  # NaN: a metric this world cannot compute (e.g. no ATAC oracle)
        name: float(row[name])
        for name in DNA_METRICS
        if row.get(name) is not None and np.isfinite(row[name])
    }
    logged = pd.read_csv(run_dir / "logs" / "csv" / "metrics.csv")
    logged = logged.dropna(subset=["train/reward_mean"])
    return Run(
        task=summary["task"],
        method=summary["weight"].split("(")[0],
        seed=int(summary["seed"]),
        finals=finals,
        curve=logged[["train/reward_calls", "train/reward_mean"]].to_numpy(dtype=float),
        x_label="oracle calls",
        meta={"dir": str(run_dir), "overrides": _overrides(run_dir)},
    )


def side_of(run_dir: Path) -> str | None:
    """``control`` or ``dna`` for a finished run folder, else None (a DNA run writes
    ``summary.json`` at its end; a control run has logged its ``total_steps``)."""
    if (run_dir / "summary.json").is_file():
        return "dna"
    config, metrics = run_dir / "config.yaml", run_dir / "metrics.csv"
    if config.is_file() and metrics.is_file():
        total = yaml.safe_load(config.read_text()).get("total_steps")
        steps = pd.read_csv(metrics, usecols=["env_step"])["env_step"]
        if total is not None and len(steps) and steps.max() >= int(total):
            return "control"
    return None


def find_runs(folders: Sequence[Path]) -> tuple[str, list[Run]]:
    """Every finished run below ``folders`` (one side only), methods named by the overrides
    that differ between runs."""
    found: dict[str, list[Path]] = {}
    for folder in folders:
        marks = [*folder.rglob("summary.json"), *folder.rglob("metrics.csv")]
        for candidate in sorted({folder, *(p.parent for p in marks)}):
            side = side_of(candidate)
            if side is not None:
                found.setdefault(side, []).append(candidate)
    if len(found) != 1:
        what = "both control and DNA runs" if found else "no finished run"
        raise GempoError(f"{', '.join(map(str, folders))}: {what}; pass one side's sweeps")
    side, dirs = next(iter(found.items()))
    runs = [(read_control_run if side == "control" else read_dna_run)(d) for d in dirs]
    name_methods(runs, TASK_KEYS[side])
    return side, runs


def name_methods(runs: Sequence[Run], task_key: str) -> None:
    """Name each run's method by its overrides, less the task, the seed and those every run
    shares; runs whose overrides name nothing else keep their default name."""
    ignored = tuple(f"{key}=" for key in (task_key, *NOT_METHOD, "torch_threads"))
    kept = [[o for o in r.meta["overrides"] if not o.startswith(ignored)] for r in runs]
    shared = set.intersection(*(set(k) for k in kept)) if kept else set()
    for run, overrides in zip(runs, kept, strict=True):
        varying = [o for o in overrides if o not in shared]
        if varying:
            run.method = " ".join(varying)


@exit_on_user_error
def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("folders", nargs="+", type=Path, help="multirun or run folders")
    parser.add_argument("--out", type=Path, required=True, help="stem of the .md/.json/.png")
    args = parser.parse_args()
    missing = [str(f) for f in args.folders if not f.is_dir()]
    if missing:
        raise GempoError(f"{', '.join(missing)}: not a folder; pass multirun or run folders")
    side, runs = find_runs(args.folders)
    metrics = CONTROL_SCORES if side == "control" else DNA_SCORES
    metrics = [m for m in metrics if any(m in r.finals for r in runs)]
    rows = table(runs)
    fmt = ".0f" if side == "control" else ".3g"
    text = (
        f"# {len(runs)} {side} runs from {', '.join(map(str, args.folders))}\n\n"
        f"Written by `python benchmarks/aggregate.py`. Final {metrics[0]} per run; mean and IQM "
        "over seeds with 95% stratified percentile-bootstrap intervals (2,000 resamples).\n\n"
        + markdown(rows, metrics, fmt)
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{args.out}.md").write_text(text)
    Path(f"{args.out}.json").write_text(
        json.dumps({"side": side, "rows": rows, "runs": [r.meta for r in runs]}, indent=1) + "\n"
    )
    y_label = "evaluation return" if side == "control" else "reward of the behaviour samples"
    figure = plot(runs, Path(f"{args.out}.png"), y_label)
    print(text)
    print(f"figure: {figure}")


if __name__ == "__main__":
    main()
