"""Weight functions of GeMPO on the enhancer task, side by side at equal oracle-call budgets.

Rows: the pretrained model, best-of-N under the same oracle-call budget as fine-tuning, and
GeMPO with each weight scheme (``exp`` = softmax reweighting, the baseline the paper
generalizes; ``linear`` and ``rank`` carry negative mass; ``linear_clip`` does not), each over
several seeds. Every run is the real command line (``python -m dna.finetune`` /
``python -m dna.evaluate``) on the shipped defaults with the budget overridden and without the
data anchor or the final selection (``PLAIN``: the weight functions alone are compared). Writes
``benchmarks/results/dna_weights.{json,md}`` and ``docs/figures/dna_weights_reward.png``
(reward of the behaviour samples vs. oracle calls, per scheme)::

    python benchmarks/dna_weights.py                         # 5 schemes x 3 seeds, default budget
    python benchmarks/dna_weights.py --batches 20 --seeds 0  # a quicker look

The budget is counted in scored batches (``--batches`` x ``--group-size`` oracle calls per run;
50 x 64 by default, as in ``benchmarks/results/dna_weights.md``); each batch is fitted with
``updates_per_batch`` optimizer steps as configured in ``configs/dna_finetune.yaml``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from aggregate import DNA_METRICS, Run, markdown, table
from omegaconf import OmegaConf

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
FIGURE = REPO / "docs" / "figures" / "dna_weights_reward.png"
SCHEMES = ("exp", "linear", "linear_clip", "rank", "advantage")
PLAIN = ("reg.data=0", "reg.data_target=null", "final.min_kmer3_corr=null")
"""``dna.finetune`` overrides for every scheme: no data anchor, the final samples from the EMA at
the end of the run (the shipped defaults add both; ``docs/dna.md``)."""


STATS = "mean [95% bootstrap interval] over the seeds counted in each row"
OLD_STATS = "mean ± std over the seeds counted in each row"
"""How the table summarises seeds (``OLD_STATS``: what headers written before said)."""


def run_command(args: list[str], log_file: Path) -> None:
    """Run ``python -m ...`` from the repository root; raise with the log's tail on failure."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("w") as handle:
        code = subprocess.run(
            [sys.executable, "-m", *args], cwd=REPO, stdout=handle, stderr=subprocess.STDOUT
        ).returncode
    if code:
        tail = "".join(log_file.read_text().splitlines(keepends=True)[-20:])
        raise RuntimeError(f"{' '.join(args)} failed ({code}):\n{tail}")


def finetune_run(scheme: str, seed: int, budget: argparse.Namespace, out: Path) -> dict[str, Any]:
    """One GeMPO fine-tuning run; returns its final row and its reward curve."""
    run_dir = out / f"{scheme}-seed{seed}"
    if not (run_dir / "summary.json").is_file():
        run_command(
            [
                "dna.finetune",
                f"weight={scheme}",
                f"seed={seed}",
                f"trainer.max_steps={budget.batches * budget.updates_per_batch}",
                f"group_size={budget.group_size}",
                f"final.num_samples={budget.num_samples}",
                f"model.steps={budget.sampling_steps}",
                "final.compare_pretrained=false",
                "trainer.enable_progress_bar=false",
                f"hydra.run.dir={run_dir}",
                *PLAIN,
                *budget.extra,
            ],
            run_dir.with_suffix(".log"),
        )
    summary = json.loads((run_dir / "summary.json").read_text())
    logged = pd.read_csv(run_dir / "logs" / "csv" / "metrics.csv").dropna(
        subset=["train/reward_mean"]
    )
    curve = logged[["train/reward_calls", "train/reward_mean"]].to_numpy().tolist()
    row = summary["rows"]["finetuned"]
    row.update(
        name=f"GeMPO {scheme}",
        seed=seed,
        oracle_calls=summary["oracle_calls"],
        seconds=summary["total_seconds"],
        curve=curve,
    )
    return row


def baseline_runs(seed: int, budget: argparse.Namespace, out: Path) -> list[dict[str, Any]]:
    """The pretrained model and best-of-N (same oracle calls as one fine-tuning run)."""
    run_dir = out / f"baselines-seed{seed}"
    calls = budget.batches * budget.group_size
    if not (run_dir / "evaluation.json").is_file():
        run_command(
            [
                "dna.evaluate",
                f"seed={seed}",
                f"num_samples={budget.num_samples}",
                f"best_of_n={calls}",
                f"sampling_steps={budget.sampling_steps}",
                f"hydra.run.dir={run_dir}",
            ],
            run_dir.with_suffix(".log"),
        )
    rows = json.loads((run_dir / "evaluation.json").read_text())["rows"]
    rows[0].update(name="pretrained", seed=seed, oracle_calls=0)
    rows[1].update(name="best-of-N", seed=seed, oracle_calls=calls)
    return rows


def as_runs(rows: list[dict[str, Any]]) -> list[Run]:
    """Per-seed rows as :class:`aggregate.Run` records (one task: the shipped cell)."""
    return [
        Run(
            task="hepg2",
            method=row["name"],
            seed=row["seed"],
            finals={m: row[m] for m in DNA_METRICS if row.get(m) is not None},
            curve=np.asarray(row.get("curve") or np.zeros((0, 2)), dtype=float),
            x_label="oracle calls",
        )
        for row in rows
    ]


def report_text(rows: list[dict[str, Any]], header: str) -> str:
    """The header and the table: each metric's mean over seeds with its 95% bootstrap
    interval, ground truth first (``benchmarks/aggregate.py``)."""
    shown = [m for m in DNA_METRICS if any(m in row for row in rows)]
    return header + "\n\n" + markdown(table(as_runs(rows)), shown, ".3g")


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    """Reward of the behaviour samples vs. oracle calls (mean over seeds) per scheme, with the
    pretrained and best-of-N fine-tune-oracle medians as reference marks."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    frame = pd.DataFrame(rows)
    for name, group in frame[frame["name"].str.startswith("GeMPO")].groupby("name", sort=False):
        curves = [np.asarray(c) for c in group["curve"]]
        length = min(len(c) for c in curves)
        mean = np.mean([c[:length, 1] for c in curves], axis=0)
        ax.plot(curves[0][:length, 0], mean, label=name.replace("GeMPO ", ""))
    for name, marker in (("pretrained", "o"), ("best-of-N", "*")):
        group = frame[frame["name"] == name]
        ax.scatter(
            group["oracle_calls"].mean(),
            group["pred_activity_ft"].mean(),
            marker=marker,
            s=80,
            color="k",
            label=f"{name} (median of kept samples)",
            zorder=3,
        )
    ax.set_xlabel("oracle calls (sequences scored)")
    ax.set_ylabel("HepG2 reward (fine-tune oracle)")
    ax.set_title("GeMPO weight functions: reward of the behaviour samples")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--schemes", nargs="+", default=list(SCHEMES), help="weight configs to compare"
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    defaults = OmegaConf.load(REPO / "configs" / "dna_finetune.yaml")
    parser.add_argument(
        "--batches", type=int, default=50, help="scored batches per fine-tuning run"
    )
    parser.add_argument("--group-size", type=int, default=64, help="sequences scored per step")
    parser.add_argument("--sampling-steps", type=int, default=32, help="denoising steps, all rows")
    parser.add_argument("--num-samples", type=int, default=640, help="samples per evaluated method")
    parser.add_argument(
        "--out", type=Path, default=REPO / "outputs" / "bench_dna_weights", help="run folders"
    )
    parser.add_argument("--name", default="dna_weights", help="stem of the result files")
    parser.add_argument(
        "--report",
        action="store_true",
        help="run nothing: tabulate and plot the finished runs already in --out (or, when it "
        "holds none, the per-run rows stored in benchmarks/results/<name>.json)",
    )
    parser.add_argument("extra", nargs="*", help="extra dna.finetune overrides, e.g. reg.alpha=0.1")
    budget = parser.parse_args()
    budget.updates_per_batch = int(defaults.updates_per_batch)
    stored = RESULTS / f"{budget.name}.json"
    rows = collect(budget)
    if rows:
        run_seconds = [row["seconds"] for row in rows if "seconds" in row]
        header = (
            f"{budget.batches} batches x {budget.group_size} sequences = "
            f"{budget.batches * budget.group_size} oracle calls per run "
            f"({budget.updates_per_batch} updates per batch); {budget.num_samples} samples "
            f"per row; {STATS}; {' '.join(PLAIN)}; extra overrides: "
            f"{budget.extra or 'none'}; {np.mean(run_seconds or [0]):.0f} s per fine-tuning run "
            f"(mean, final evaluation included)."
        )
    elif budget.report and stored.is_file():  # no run folders here: the stored per-run rows
        saved = json.loads(stored.read_text())
        rows, header = saved["runs"], saved["header"].replace(OLD_STATS, STATS)
    else:
        raise SystemExit(f"error: no finished run in {budget.out} and no {stored}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    text = report_text(rows, header)
    (RESULTS / f"{budget.name}.md").write_text(text)
    stored.write_text(json.dumps({"header": header, "runs": rows}, indent=1))
    plot(
        rows,
        FIGURE if budget.name == "dna_weights" else FIGURE.with_name(f"{budget.name}_reward.png"),
    )
    print(text)


def collect(budget: argparse.Namespace) -> list[dict[str, Any]]:
    """Per-seed rows: run what is missing, or with ``--report`` only read what finished."""
    rows: list[dict[str, Any]] = []
    for seed in budget.seeds:
        baselines_done = (budget.out / f"baselines-seed{seed}" / "evaluation.json").is_file()
        if baselines_done or not budget.report:
            rows += baseline_runs(seed, budget, budget.out)
        for scheme in budget.schemes:
            run_done = (budget.out / f"{scheme}-seed{seed}" / "summary.json").is_file()
            if run_done or not budget.report:
                rows.append(finetune_run(scheme, seed, budget, budget.out))
                print(f"{scheme} seed {seed}: eval median {rows[-1]['pred_activity']:.3f}")
    return rows


if __name__ == "__main__":
    main()
