"""Variants of ``python -m dna.finetune`` side by side over seeds, with the acceptance checks.

A variant is a set of Hydra overrides of the default command (``""`` is the default itself).
Each row gives the mean ± std over seeds of the final 640 samples' metrics, the value of each
seed (the checks hold per run, so the spread matters), and how many seeds pass all three of
the default command's checks (simulated world: the true median above the data's true 99.9th
percentile; real world: the eval-oracle median above the data's 99.9th percentile; 3-mer
correlation >= 0.5; App-Log-Lik within 15% of the pretrained model's). Writes
``benchmarks/results/<name>.{md,json}``::

    # the defaults against a looser anchor target and no selection, 3 seeds, 2 runs at a time
    python benchmarks/dna_sweep.py --name anchor_target --jobs 2 \\
        --variant "" --variant "reg.data_target=0.6" --variant "final.min_kmer3_corr=null"
    # tabulate the finished runs already in --out, run nothing
    python benchmarks/dna_sweep.py --name anchor_target --report --variant "" ...

Run folders: ``<out>/<name>/<variant slug>-seed<seed>``; a run whose ``summary.json`` exists is
not run again. Runs use the configured accelerator (``trainer.accelerator=auto``: a GPU when
there is one), so several ``--jobs`` can share one GPU.
"""

from __future__ import annotations

import argparse
import json
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from aggregate import interval_text, summarize
from dna_weights import REPO, RESULTS, run_command

from dna.checks import check_names

METRICS = ("true_activity", "pred_activity", "kmer3_corr", "app_log_lik", "hamming")


def slug(variant: str) -> str:
    """A folder name for a variant's overrides (``default`` for none)."""
    return re.sub(r"[^A-Za-z0-9.]+", "_", variant.strip()).strip("_") or "default"


def run_dir(out: Path, variant: str, seed: int) -> Path:
    return out / f"{slug(variant)}-seed{seed}"


def finetune(variant: str, seed: int, out: Path) -> None:
    """One ``dna.finetune`` run of ``variant`` (skipped when its summary exists)."""
    folder = run_dir(out, variant, seed)
    if (folder / "summary.json").is_file():
        return
    overrides = variant.split()
    run_command(
        [
            "dna.finetune",
            f"seed={seed}",
            "trainer.enable_progress_bar=false",
            f"hydra.run.dir={folder}",
            *overrides,
        ],
        folder.parent / f"{folder.name}.log",  # slugs keep dots: no with_suffix
    )
    print(f"done: {variant or 'default'} seed {seed}", flush=True)


def batch_kmer3_drift(folder: Path) -> tuple[float, float] | None:
    """The behaviour batches' 3-mer correlation to the reference: the first batch's and the
    mean of the last three (``None`` for runs that did not log it)."""
    logged = pd.read_csv(folder / "logs" / "csv" / "metrics.csv")
    if "train/kmer3_corr" not in logged:
        return None
    values = logged["train/kmer3_corr"].dropna().to_numpy()
    return float(values[0]), float(values[-3:].mean())


def checks_of(summary: dict[str, Any]) -> tuple[str, ...]:
    """The acceptance checks a run's summary is judged by (truth first in the simulated
    world)."""
    return check_names(bool(summary.get("simulated")))


def threshold_text(row: dict[str, Any]) -> str:
    """The threshold the checks use: the data's true 99.9th percentile in the simulated world
    (the measured one next to it), else the measured one."""
    measured = f"the data's measured 99.9th percentile {row['threshold']:.2f}"
    if row.get("true_threshold") is None:
        return f"threshold: {measured}"
    return (
        f"threshold: the data's true 99.9th percentile {row['true_threshold']:.3f}, checked "
        f"against the true median ({measured})"
    )


def variant_row(
    variant: str, summaries: list[dict[str, Any]], folders: list[Path]
) -> dict[str, Any]:
    """Per metric of the finetuned rows: the mean and IQM over seeds with 95% bootstrap
    intervals and the per-seed values; the drift of the behaviour batches' 3-mer correlation;
    the check pass count."""
    tuned = [s["rows"]["finetuned"] for s in summaries]
    row: dict[str, Any] = {
        "variant": variant or "default",
        "seeds": [s["seed"] for s in summaries],
        "oracle_calls": summaries[0]["oracle_calls"],
        "train_seconds": float(np.mean([s["train_seconds"] for s in summaries])),
        "passed": sum(all(s["checks"].get(c) for c in checks_of(s)) for s in summaries)
        if all(c in s["checks"] for s in summaries for c in checks_of(s))
        else None,  # runs without the pretrained comparison have no App-Log-Lik check
        "threshold": summaries[0]["threshold"],
        "true_threshold": summaries[0].get("true_threshold"),
        "batch_kmer3_first_last": [batch_kmer3_drift(folder) for folder in folders],
        # the run's final model (no selection), next to the selected snapshot of the row
        "final_model_per_seed": [
            {k: final.get(k) for k in ("true_activity", "pred_activity", "kmer3_corr")}
            if (final := s["rows"].get("final_model"))
            else None
            for s in summaries
        ],
    }
    for metric in METRICS:
        values = [float(t[metric]) for t in tuned if metric in t]
        if values:
            row[metric] = {**summarize(np.asarray(values)), "per_seed": values}
    return row


def markdown(rows: list[dict[str, Any]], header: str) -> str:
    """The table: one line per variant."""
    shown = [m for m in METRICS if any(m in row for row in rows)]
    lines = [
        header,
        "",
        "| variant | oracle calls | "
        + " | ".join(shown)
        + " | eval / 3-mer per seed | final model (no selection): true / eval / 3-mer per seed"
        " | batch 3-mer, first → last | passed |",
        "|---|---|" + "---|" * len(shown) + "---|---|---|---|",
    ]
    for row in rows:
        cells = [interval_text(row[m], "mean", ".3g") if m in row else "–" for m in shown]
        per_seed = ", ".join(
            f"{a:.1f} / {k:.2f}"
            for a, k in zip(
                row["pred_activity"]["per_seed"], row["kmer3_corr"]["per_seed"], strict=True
            )
        )
        drift = ", ".join(
            "–" if d is None else f"{d[0]:.2f} → {d[1]:.2f}" for d in row["batch_kmer3_first_last"]
        )
        passed = "–" if row["passed"] is None else f"{row['passed']}/{len(row['seeds'])}"
        finals = ", ".join(
            "–"
            if f is None
            else " / ".join(
                "–" if f[k] is None else f"{f[k]:.2f}"
                for k in ("true_activity", "pred_activity", "kmer3_corr")
            )
            for f in row.get("final_model_per_seed", [])
        )
        lines.append(
            f"| `{row['variant']}` | {row['oracle_calls']} | "
            + " | ".join(cells)
            + f" | {per_seed} | {finals or '–'} | {drift} | {passed} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--name", required=True, help="stem of the result files and run folder")
    parser.add_argument(
        "--variant",
        action="append",
        required=True,
        help='dna.finetune overrides of one row, space-separated ("" = the default command)',
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time")
    parser.add_argument("--out", type=Path, default=REPO / "outputs" / "bench_dna_sweep")
    parser.add_argument(
        "--report", action="store_true", help="run nothing: tabulate the finished runs in --out"
    )
    parser.add_argument("--note", default="", help="where and how the runs were made (header)")
    args = parser.parse_args()
    out = args.out / args.name
    if not args.report:
        with ThreadPoolExecutor(max_workers=max(args.jobs, 1)) as pool:
            jobs = [
                pool.submit(finetune, variant, seed, out)
                for variant in args.variant
                for seed in args.seeds
            ]
            for job in jobs:
                job.result()
    rows = []
    for variant in args.variant:
        finished = [
            (seed, folder)
            for seed in args.seeds
            if ((folder := run_dir(out, variant, seed)) / "summary.json").is_file()
        ]
        folders = [folder for _, folder in finished]
        summaries = [
            json.loads((folder / "summary.json").read_text()) | {"seed": seed}
            for seed, folder in finished
        ]
        if summaries:
            rows.append(variant_row(variant, summaries, folders))
    if not rows:
        raise SystemExit(f"no finished runs under {out}")
    header = (
        f"`dna.finetune` variants (overrides of the default command), mean [95% bootstrap "
        f"interval] over seeds "
        f"{args.seeds}; {threshold_text(rows[0])}; passed = seeds passing all three checks. "
        f"{args.note}".strip()
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.md").write_text(markdown(rows, header))
    (RESULTS / f"{args.name}.json").write_text(
        json.dumps({"header": header, "rows": rows}, indent=1)
    )
    print(markdown(rows, header))


if __name__ == "__main__":
    main()
