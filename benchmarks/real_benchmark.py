"""The published enhancer benchmark, run from its released files: GeMPO next to the pretrained
model and best-of-N, in the benchmark's table (DRAKES protocol).

    pip install -e ".[grelu]"
    python benchmarks/real_benchmark.py --release /data/release --data /data/gosai_all.csv

``--release``: the folder with the release's ``reward_oracle_ft.ckpt``,
``reward_oracle_eval.ckpt``, ``binary_atac_cell_lines.ckpt`` and ``pretrained.ckpt``;
``--data``: the Gosai et al. table (``gosai_all.csv`` or ``dataset.csv.gz``). Per seed:

1. ``python -m dna.finetune`` with ``data=gosai oracle=grelu model=drakes_release`` and the
   released generator: GeMPO, rewarded by the fine-tune oracle; the summary has the selected
   snapshot and the final model (no selection);
2. ``python -m dna.evaluate`` with the same files: the pretrained model and best-of-N at the
   fine-tuning run's oracle calls (an equal budget).

Every row is 640 samples (``--num-samples``) scored with the benchmark's five metrics:
Pred-Activity (median, eval oracle; the fine-tune oracle's next to it), ATAC-Acc, 3-mer and
JASPAR-motif correlation to the data's top 0.1%, App-Log-Lik (median, pretrained model). Writes
``<out>/real_benchmark.{md,json}``: each metric's mean over seeds with its 95% bootstrap interval.
``--finetune-set`` / ``--evaluate-set`` pass overrides to one command (e.g.
``trainer.accelerator=gpu oracle.device=cuda`` / ``oracle.device=cuda``). A seed whose outputs
exist is not run again.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from dna_weights import report_text, run_command

from gempo.errors import GempoError, exit_on_user_error
from gempo.runs import write_json

RELEASE_FILES = {
    "oracle.finetune": "reward_oracle_ft.ckpt",
    "oracle.eval": "reward_oracle_eval.ckpt",
    "oracle.atac": "binary_atac_cell_lines.ckpt",
    "pretrained": "pretrained.ckpt",
}
"""The command-line option each released file is passed as, and its name in the release."""


def release_overrides(release: Path, data: Path) -> list[str]:
    """The overrides that point both commands at the released files and the data."""
    missing = [name for name in RELEASE_FILES.values() if not (release / name).is_file()]
    if missing:
        raise GempoError(f"--release {release}: missing {', '.join(missing)}")
    if not data.is_file():
        raise GempoError(f"--data {data}: no such file (gosai_all.csv or dataset.csv.gz)")
    paths = [f"{option}={(release / name).resolve()}" for option, name in RELEASE_FILES.items()]
    return ["data=gosai", f"data.path={data.resolve()}", "oracle=grelu", *paths]


def seed_rows(seed: int, args: argparse.Namespace, files: list[str]) -> list[dict[str, Any]]:
    """GeMPO (selected and final model), pretrained and best-of-N rows of one seed."""
    gempo_dir, baseline_dir = args.out / f"gempo-seed{seed}", args.out / f"baselines-seed{seed}"
    if not (gempo_dir / "summary.json").is_file():
        run_command(
            ["dna.finetune", *files, "model=drakes_release", f"seed={seed}",
             f"final.num_samples={args.num_samples}", "final.compare_pretrained=false",
             f"model.steps={args.sampling_steps}", "trainer.enable_progress_bar=false",
             f"hydra.run.dir={gempo_dir}", *args.finetune_set],
            gempo_dir.with_suffix(".log"),
        )  # fmt: skip
    summary = json.loads((gempo_dir / "summary.json").read_text())
    calls = int(summary["oracle_calls"])
    if not (baseline_dir / "evaluation.json").is_file():
        run_command(
            ["dna.evaluate", *files, f"seed={seed}", f"num_samples={args.num_samples}",
             f"best_of_n={max(calls, args.num_samples)}", f"sampling_steps={args.sampling_steps}",
             f"hydra.run.dir={baseline_dir}", *args.evaluate_set],
            baseline_dir.with_suffix(".log"),
        )  # fmt: skip
    pretrained, best_of_n = json.loads((baseline_dir / "evaluation.json").read_text())["rows"]
    rows = [
        {**pretrained, "name": "pretrained", "oracle_calls": 0},
        {**best_of_n, "name": "best-of-N", "oracle_calls": max(calls, args.num_samples)},
    ]
    selected = "final_model" in summary["rows"]
    for key, name in (
        ("finetuned", "GeMPO (selected)" if selected else "GeMPO"),
        ("final_model", "GeMPO (final model)"),
    ):
        if key in summary["rows"]:
            rows.append({**summary["rows"][key], "name": name, "oracle_calls": calls})
    return [{**row, "seed": seed} for row in rows]


@exit_on_user_error
def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--release", type=Path, required=True, help="folder of released files")
    parser.add_argument("--data", type=Path, required=True, help="gosai_all.csv/dataset.csv.gz")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--num-samples", type=int, default=640, help="samples per row")
    parser.add_argument(
        "--out", type=Path, default=Path("outputs/benchmarks/real_benchmark"), help="run folders"
    )
    parser.add_argument(
        "--sampling-steps", type=int, default=128, help="denoising steps (the release's 128)"
    )
    for command in ("finetune", "evaluate"):
        parser.add_argument(
            f"--{command}-set", nargs="*", default=[], metavar="KEY=VALUE",
            help=f"overrides for dna.{command}",
        )  # fmt: skip
    args = parser.parse_args()
    args.out = args.out.resolve()
    files = release_overrides(args.release, args.data)
    rows = [row for seed in args.seeds for row in seed_rows(seed, args, files)]
    header = (
        f"# The published enhancer benchmark (released oracles and generator)\n\n"
        f"Data {args.data.name}; seeds {args.seeds}; {args.num_samples} samples per row; "
        f"{args.sampling_steps} sampling steps; overrides: fine-tuning "
        f"{args.finetune_set or 'none'}, evaluation {args.evaluate_set or 'none'}. Real world: "
        "no ground truth, the eval oracle's Pred-Activity is the headline. "
        "Written by benchmarks/real_benchmark.py."
    )
    text = report_text(rows, header)
    (args.out / "real_benchmark.md").write_text(text)
    write_json(
        args.out / "real_benchmark.json",
        {"rows": rows, "args": vars(args)},
    )
    print(text)


if __name__ == "__main__":
    main()
