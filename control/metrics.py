"""Metrics against environment steps: a long-format CSV, TensorBoard events, and the
learning-curve plot written at the end of a run."""

from __future__ import annotations

import csv
from collections.abc import Mapping
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure
from torch.utils.tensorboard import SummaryWriter

FIELDS = ("env_step", "grad_updates", "name", "value")


class MetricsLogger:
    """Appends ``(env_step, grad_updates, name, value)`` rows to ``metrics.csv`` and the same
    scalars (x-axis: env steps) to TensorBoard under ``tensorboard/``.

    ``history`` rows (from a resumed checkpoint) are written first, so a resumed run's CSV
    holds the whole curve.
    """

    def __init__(self, run_dir: Path, history: list[dict] | None = None) -> None:
        run_dir.mkdir(parents=True, exist_ok=True)
        self.csv_path = run_dir / "metrics.csv"
        self.rows: list[dict] = []
        self._file = self.csv_path.open("w", newline="")
        self._csv = csv.DictWriter(self._file, fieldnames=FIELDS)
        self._csv.writeheader()
        self.writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"))
        for row in history or []:
            self._write(row)

    def _write(self, row: dict) -> None:
        self.rows.append(row)
        self._csv.writerow(row)
        self.writer.add_scalar(row["name"], row["value"], row["env_step"])

    def log(self, metrics: Mapping[str, float], env_step: int, grad_updates: int) -> None:
        for name, value in metrics.items():
            self._write(
                {
                    "env_step": env_step,
                    "grad_updates": grad_updates,
                    "name": name,
                    "value": float(value),
                }
            )
        self._file.flush()

    def eval_rows(self) -> list[dict]:
        """Rows of ``eval/...`` and ``eval_raw/...`` metrics (they go into checkpoints as the
        curves so far)."""
        return [row for row in self.rows if row["name"].startswith(("eval/", "eval_raw/"))]

    def close(self) -> None:
        self._file.close()
        self.writer.close()


def read_eval_curve(csv_path: Path, prefix: str = "eval") -> pd.DataFrame:
    """``env_step, return_mean, return_std`` from a ``metrics.csv``; ``prefix``: ``eval`` (the
    evaluation rule) or ``eval_raw`` (one plain policy sample)."""
    frame = pd.read_csv(csv_path)
    names = {f"{prefix}/return_mean": "return_mean", f"{prefix}/return_std": "return_std"}
    frame = frame[frame["name"].isin(list(names))]
    curve = frame.pivot_table(index="env_step", columns="name", values="value").reset_index()
    return curve.rename(columns=names)


def plot_learning_curves(curves: Mapping[str, pd.DataFrame], path: Path, title: str) -> Path:
    """Eval return (mean ± std over episodes) against env steps, one line per curve."""
    fig = Figure(figsize=(6, 4))  # no pyplot: leaves the caller's backend alone
    ax = fig.subplots()
    for label, curve in curves.items():
        ax.plot(curve["env_step"], curve["return_mean"], marker="o", ms=3, label=label)
        ax.fill_between(
            curve["env_step"],
            curve["return_mean"] - curve["return_std"],
            curve["return_mean"] + curve["return_std"],
            alpha=0.2,
        )
    ax.set_xlabel("environment steps")
    ax.set_ylabel("evaluation return")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if len(curves) > 1:
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path
