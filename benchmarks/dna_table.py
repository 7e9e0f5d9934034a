r"""The default DNA command over seeds: the table that docs/dna.md reads, ground truth first.

    python benchmarks/dna_table.py --seeds 0 1 2 3 4 --jobs 2   # runs what is missing, tabulates
    python benchmarks/dna_table.py --report                     # tabulates finished runs only
    # the default command alone on the machine, timed (wall time and peak memory):
    python benchmarks/dna_table.py --seeds 0 --jobs 1 --threads 2 --out outputs/bench_dna_table \
        --name dna_finetune_default

Each seed is ``python -m dna.finetune oracle=pred_activity seed=<s>`` with nothing else changed
(run folders ``<out>/default-seed<s>``; a finished one is not run again), with ``--threads``
torch threads (results depend on the thread count: CPU kernels sum in an order that changes
with it, and an online run amplifies the last-bit differences). Writes
``benchmarks/results/<--name>.{md,json}`` (default ``dna_table``):

- the world: the data's 99.9th percentile of the objective, measured and true (the designs'
  true median is checked against the true one);
- per method (GeMPO's selected snapshot, GeMPO's final model with no selection, the pretrained
  model), each metric's mean over seeds with its 95% bootstrap interval: true activity, the
  share of designs whose truth is above the data's top 0.1%, the eval and fine-tune oracles'
  medians, their excess over the truth, then ATAC, naturalness and diversity;
- per seed: the checks (on the truth), each oracle's (eval, fine-tune, audit) Pearson r with
  the truth over the run's final designs, the selected step, wall time and the run's threads.

Before any seed has finished it writes the world's thresholds alone.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from dna_sweep import finetune, run_dir
from dna_weights import REPO, RESULTS, report_text
from omegaconf import OmegaConf

from dna.checks import check_names
from dna.evaluate import load_world_data, measured_threshold, true_threshold
from dna.rewards import OracleReward

ROW_NAMES = {"finetuned": "GeMPO", "final_model": "GeMPO (final model)", "pretrained": "pretrained"}


def world_thresholds() -> dict[str, float]:
    """The default world's 99.9th percentiles of the objective: measured and true."""
    cfg = OmegaConf.load(REPO / "configs" / "dna_finetune.yaml")
    data_cfg = OmegaConf.load(REPO / "configs" / "data" / "simulated.yaml")
    cell = OmegaConf.to_container(OmegaConf.load(REPO / "configs" / "cell" / "hepg2.yaml"))
    data, _ = load_world_data(None, data_cfg.num_sequences, data_cfg.seed)
    reward = OracleReward(torch.nn.Identity(), **cell)
    return {
        "measured": measured_threshold(data, cell["target"]),
        "true": true_threshold(data, reward),
        "final_num_samples": int(cfg.final.num_samples),
    }


def seed_rows(summary: dict[str, Any], seed: int) -> list[dict[str, Any]]:
    """The summary's rows (selected, final model, pretrained) named for the table."""
    selected = "final_model" in summary["rows"]
    names = ROW_NAMES | ({"finetuned": "GeMPO (selected)"} if selected else {})
    return [{**row, "name": names[key], "seed": seed} for key, row in summary["rows"].items()]


CALIBRATED = ("reward_eval", "reward_ft", "reward_audit")


def calibration(folder: Path) -> list[float]:
    """Pearson r of the eval, the fine-tune and the audit oracle's objective with the truth
    over the run's final designs (``samples.csv``; nan for an oracle the run did not have):
    how far each oracle can be trusted where the policy went."""
    samples = pd.read_csv(folder / "samples.csv")
    return [
        float(np.corrcoef(samples[column], samples["true_reward"])[0, 1])
        if column in samples
        else float("nan")
        for column in CALIBRATED
    ]


def seed_line(summary: dict[str, Any], seed: int, folder: Path) -> str:
    """One line of the per-seed table: checks, oracle calibration on the designs, selection,
    time."""
    checks = summary["checks"]
    names = check_names(bool(summary["simulated"]))
    marks = " | ".join("yes" if checks.get(c) else "no" for c in names)
    step = (summary.get("selected") or {}).get("step")
    r_text = " | ".join("–" if np.isnan(r) else f"{r:.2f}" for r in calibration(folder))
    return (
        f"| {seed} | {marks} | {r_text} | {'–' if step is None else step} | "
        f"{summary['train_seconds'] / 60:.1f} | {summary['total_seconds'] / 60:.1f} | "
        f"{summary.get('threads', '–')} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    parser.add_argument("--out", type=Path, default=REPO / "outputs" / "bench_dna_table")
    parser.add_argument("--report", action="store_true", help="run nothing, tabulate")
    parser.add_argument("--note", default="", help="how the runs shared the machine (header)")
    parser.add_argument("--name", default="dna_table", help="stem of the result files")
    args = parser.parse_args()
    out = args.out.resolve()
    if not args.report:
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(args.threads)
        with ThreadPoolExecutor(max_workers=max(args.jobs, 1)) as pool:
            for job in [pool.submit(finetune, "", seed, out) for seed in args.seeds]:
                job.result()
    finished = {
        seed: json.loads((folder / "summary.json").read_text())
        for seed in args.seeds
        if ((folder := run_dir(out, "", seed)) / "summary.json").is_file()
    }
    world = world_thresholds()
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20  # KiB -> GiB
    names = check_names(simulated=True)
    header = "\n".join(
        [
            "# `python -m dna.finetune oracle=pred_activity` over seeds",
            "",
            f"Written by `python benchmarks/dna_table.py --name {args.name}`. "
            f"Seeds {sorted(finished)} of "
            f"{args.seeds}; {world['final_num_samples']} final samples per row; simulated world. "
            f"The data's 99.9th percentile of the objective: **{world['true']:.3f} true**, "
            f"{world['measured']:.3f} measured. Machine: {platform.machine()}, "
            f"{os.cpu_count()} cores, torch {torch.__version__}; torch threads per run in the "
            f"per-seed table. {args.note}".rstrip()
            + (
                f" Peak resident memory of a run made by this invocation: {peak:.2f} GiB."
                if peak
                else ""
            ),
        ]
    )
    rows = [row for seed, summary in finished.items() for row in seed_rows(summary, seed)]
    per_seed = [
        "| seed | " + " | ".join(names) + " | r(eval, truth) on the designs | r(ft, truth) | "
        "r(audit, truth) | selected step | training (min) | all (min) | threads |",
        "|---|" + "---|" * (len(names) + 7),
        *(seed_line(summary, seed, run_dir(out, "", seed)) for seed, summary in finished.items()),
    ]
    if rows:
        text = report_text(rows, header) + "\nPer seed (checks on the ground truth):\n\n"
        text += "\n".join(per_seed) + "\n"
    else:
        text = header + "\n\nNo seed has finished yet.\n"
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.md").write_text(text)
    payload = {"world": world, "seeds": sorted(finished), "rows": rows}
    (RESULTS / f"{args.name}.json").write_text(json.dumps(payload, indent=1))
    print(text)


if __name__ == "__main__":
    main()
