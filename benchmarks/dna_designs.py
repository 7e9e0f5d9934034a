r"""The designs of the default DNA command with and without its safeguards, one row per design.

    python benchmarks/dna_designs.py --seed 0 --jobs 2     # runs what is missing, writes the files
    python benchmarks/dna_designs.py --seed 0 --report     # writes the files from finished runs

Two ``python -m dna.finetune oracle=pred_activity seed=<s>`` runs (one torch thread each; run
folders ``<out>/<variant slug>-seed<s>``, a finished one is not run again, so with the same
``--out`` as ``benchmarks/dna_table.py`` the default run is that table's run of the seed):

- ``plain``: the safeguards against reward hacking off (``reg.data=0 reg.data_target=null
  final.min_kmer3_corr=null``: no data anchor, the samples of the last model);
- ``default``: the command as shipped (the adaptive data anchor and the selected snapshot).

Writes ``benchmarks/results/dna_designs/<variant>-seed<s>.csv.gz`` with the run's final designs
(``seq``, the fine-tune, eval and audit oracles' objective, the ground truth, ATAC probability,
log-likelihood under the pretrained model) and ``benchmarks/results/dna_designs.{md,json}``
(per variant: medians, the share of designs above the data's true 99.9th percentile, each
oracle's Pearson r with the truth, the most copies of one 8-mer, and from the run's summary
the 3-mer correlation, App-Log-Lik, distinct 10-mers and the checks). The notebook
``notebooks/explore_sequences.ipynb`` plots them: what reward hacking looks like and what the
safeguards change.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from dna_sweep import finetune, run_dir
from dna_table import world_thresholds
from dna_weights import REPO, RESULTS

from dna import metrics
from dna.checks import check_names
from dna.sequences import encode

VARIANTS = {
    "plain": "reg.data=0 reg.data_target=null final.min_kmer3_corr=null",
    "default": "",
}
COLUMNS = ("seq", "reward_ft", "reward_eval", "reward_audit", "true_reward", "atac_prob", "log_lik")
ORACLES = {"reward_eval": "eval", "reward_ft": "fine-tune", "reward_audit": "audit"}
RUN_METRICS = ("kmer3_corr", "app_log_lik", "distinct_10mer")  # from the run's summary.json
DESIGNS = RESULTS / "dna_designs"


def designs(folder: Path) -> pd.DataFrame:
    """The run's final designs with the columns the notebook reads, rounded to 4 decimals."""
    samples = pd.read_csv(folder / "samples.csv")
    return samples[[c for c in COLUMNS if c in samples]].round(4)


def variant_summary(frame: pd.DataFrame, true_threshold: float) -> dict[str, Any]:
    """Medians, share above the data's true top 0.1 %, each oracle's r with the truth, repeats."""
    copies = metrics.max_kmer_copies(encode(frame["seq"].tolist())).numpy()
    return {
        "n": len(frame),
        "true_median": float(frame["true_reward"].median()),
        "true_above_threshold_percent": float(100 * (frame["true_reward"] > true_threshold).mean()),
        **{f"{name}_median": float(frame[c].median()) for c, name in ORACLES.items() if c in frame},
        **{
            f"r_{name}_truth": float(np.corrcoef(frame[c], frame["true_reward"])[0, 1])
            for c, name in ORACLES.items()
            if c in frame
        },
        "max_8mer_copies_median": float(np.median(copies)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time")
    parser.add_argument("--out", type=Path, default=REPO / "outputs" / "bench_dna_table")
    parser.add_argument("--report", action="store_true", help="run nothing, write the files")
    args = parser.parse_args()
    out = args.out.resolve()
    if not args.report:
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = "1"
        with ThreadPoolExecutor(max_workers=max(args.jobs, 1)) as pool:
            jobs = [pool.submit(finetune, v, args.seed, out) for v in VARIANTS.values()]
            for job in jobs:
                job.result()
    world = world_thresholds()
    DESIGNS.mkdir(parents=True, exist_ok=True)
    rows: dict[str, dict[str, Any]] = {}
    for name, overrides in VARIANTS.items():
        folder = run_dir(out, overrides, args.seed)
        if not (folder / "summary.json").is_file():
            continue
        frame = designs(folder)
        frame.to_csv(DESIGNS / f"{name}-seed{args.seed}.csv.gz", index=False)
        summary = json.loads((folder / "summary.json").read_text())
        row = summary["rows"]["finetuned"]
        rows[name] = {
            "name": name,
            "overrides": overrides,
            "seed": args.seed,
            "threads": summary.get("threads"),
            **variant_summary(frame, world["true"]),
            **{key: row[key] for key in RUN_METRICS},
            "checks": {c: bool(summary["checks"][c]) for c in check_names(simulated=True)},
        }
    header = [
        "# Designs of the default DNA command with and without its safeguards",
        "",
        f"Written by `python benchmarks/dna_designs.py --seed {args.seed}`; simulated world; one "
        f"seed, so this shows what the designs look like, not how often (five seeds of the "
        f"default: `dna_table.md`). The data's 99.9th percentile of the objective: "
        f"{world['true']:.3f} true, {world['measured']:.3f} measured. Machine: "
        f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}; torch "
        f"threads per run: "
        + ", ".join(f"{name} {row['threads']}" for name, row in rows.items())
        + f". Per-design files: `dna_designs/<variant>-seed{args.seed}.csv.gz`.",
        "",
        "| variant | overrides | true median | % above true top 0.1 % | eval median | "
        "fine-tune median | audit median | r(eval, truth) | r(ft, truth) | r(audit, truth) | "
        "most copies of one 8-mer (median) | 3-mer corr | App-Log-Lik | distinct 10-mers | "
        "checks passed |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines = [
        f"| {name} | `{row['overrides'] or '(none)'}` | {row['true_median']:.2f} | "
        f"{row['true_above_threshold_percent']:.1f} | {row.get('eval_median', np.nan):.2f} | "
        f"{row.get('fine-tune_median', np.nan):.2f} | {row.get('audit_median', np.nan):.2f} | "
        f"{row.get('r_eval_truth', np.nan):.2f} | {row.get('r_fine-tune_truth', np.nan):.2f} | "
        f"{row.get('r_audit_truth', np.nan):.2f} | {row['max_8mer_copies_median']:.0f} | "
        f"{row['kmer3_corr']:.3f} | {row['app_log_lik']:.1f} | {row['distinct_10mer']:.3f} | "
        f"{sum(row['checks'].values())} of {len(row['checks'])} |"
        for name, row in rows.items()
    ]
    text = "\n".join(header + (lines or ["| (no run has finished yet) |"])) + "\n"
    (RESULTS / "dna_designs.md").write_text(text)
    payload = {"world": world, "seed": args.seed, "rows": list(rows.values())}
    (RESULTS / "dna_designs.json").write_text(json.dumps(payload, indent=1))
    print(text)


if __name__ == "__main__":
    main()
