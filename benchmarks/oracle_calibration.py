"""How far each oracle can be trusted, on held-out data and where fine-tuning went (simulated
world): the fine-tune oracle (the reward), the eval oracle and the audit oracle against the
simulator's noise-free truth.

    python benchmarks/oracle_calibration.py                      # the dna_table runs' designs
    python benchmarks/oracle_calibration.py --runs outputs/dna_finetune/hepg2-rank-seed0

For fresh simulated sequences (``--heldout`` of them, a seed no oracle trained on), for
``--per-half`` sequences of each chromosome half of the default data (each oracle's training
half and the other one: the two halves differ in composition and motif usage, so the other half
is out of distribution) and for the final designs of each run folder (``samples.csv``), every
oracle of ``configs/oracle/pred_activity.yaml`` scores the ``cell=hepg2`` objective. Per set:
its GC share and median truth; per oracle: the median score, the median overshoot (oracle minus
truth) and the Pearson r with the truth. Writes
``benchmarks/results/oracle_calibration.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from dna_weights import REPO, RESULTS
from hydra.utils import instantiate
from omegaconf import OmegaConf

from dna.data import configured_halves
from dna.evaluate import load_world_data
from dna.rewards import cell_reward
from dna.sequences import encode
from dna.simulator import simulate_sequences, true_activity

ROLES = ("finetune", "eval", "audit")


def calibration_row(name: str, sequences: list[str], rewards: dict[str, Any]) -> dict[str, Any]:
    """One set's row: the truth's median and, per oracle, its median, overshoot and r."""
    tokens = encode(sequences)
    truth = rewards["finetune"].from_activities(torch.from_numpy(true_activity(tokens))).numpy()
    row: dict[str, Any] = {
        "set": name,
        "num": len(sequences),
        "gc": float(((tokens == 1) | (tokens == 2)).double().mean()),
        "true_median": float(np.median(truth)),
    }
    for role, reward in rewards.items():
        score = reward(torch.zeros(len(tokens), 0), tokens).numpy()
        row[role] = {
            "median": float(np.median(score)),
            "overshoot_median": float(np.median(score - truth)),
            "pearson_truth": float(np.corrcoef(score, truth)[0, 1]),
        }
    return row


def markdown(rows: list[dict[str, Any]], header: str) -> str:
    """The table: one line per set, the truth first, then each oracle."""
    cells = " | ".join(f"{role}: median / − truth / r" for role in ROLES)
    lines = [
        header,
        "",
        f"| set | n | GC | true median | {cells} |",
        "|---|---|---|---|" + "---|" * 3,
    ]
    for row in rows:
        scores = " | ".join(
            f"{row[r]['median']:.2f} / {row[r]['overshoot_median']:+.2f} / "
            f"{row[r]['pearson_truth']:.2f}"
            for r in ROLES
        )
        lines.append(
            f"| {row['set']} | {row['num']} | {row['gc']:.3f} | {row['true_median']:.2f} | "
            f"{scores} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--runs",
        nargs="*",
        type=Path,
        default=sorted((REPO / "outputs" / "bench_dna_table").glob("default-seed*")),
        help="dna.finetune run folders (their samples.csv)",
    )
    parser.add_argument("--heldout", type=int, default=5000, help="fresh simulated sequences")
    parser.add_argument("--heldout-seed", type=int, default=1000)
    parser.add_argument("--per-half", type=int, default=5000, help="data rows per chromosome half")
    parser.add_argument("--name", default="oracle_calibration", help="stem of the result files")
    parser.add_argument("--note", default="", help="where the runs come from (header)")
    args = parser.parse_args()
    cfg = OmegaConf.load(REPO / "configs" / "oracle" / "pred_activity.yaml")
    cell = OmegaConf.to_container(OmegaConf.load(REPO / "configs" / "cell" / "hepg2.yaml"))
    oracles = instantiate(cfg)
    rewards = {role: cell_reward(getattr(oracles, role), cell) for role in ROLES}
    rows = [
        calibration_row(
            f"held-out: {args.heldout} fresh simulated sequences (seed {args.heldout_seed})",
            simulate_sequences(args.heldout, seed=args.heldout_seed),
            rewards,
        )
    ]
    data_cfg = OmegaConf.load(REPO / "configs" / "data" / "simulated.yaml")
    data, _ = load_world_data(None, data_cfg.num_sequences, data_cfg.seed)
    halves = configured_halves(data, data_cfg)
    for half, trained in (("first", "the fine-tune oracle's"), ("second", "the eval and audit's")):
        frame = getattr(halves, half)
        picked = frame.sample(min(args.per_half, len(frame)), random_state=0)["seq"].tolist()
        name = f"data {halves.name(half)} ({trained} training half; {len(picked)} of {len(frame)})"
        rows.append(calibration_row(name, picked, rewards))
    for folder in args.runs:
        samples = pd.read_csv(folder / "samples.csv")
        rows.append(calibration_row(f"designs: {folder.name}", samples["seq"].tolist(), rewards))
    header = (
        "# Oracles against the simulator's truth (objective: HepG2 activity)\n\n"
        "Written by `python benchmarks/oracle_calibration.py`. Each cell: the oracle's median "
        "score / its median overshoot of the truth (oracle − truth) / its Pearson r with the "
        "truth over the set; GC: the set's GC share. `finetune` is the reward (CNN, chr1-11), "
        "`eval` the eval oracle (CNN, chr12-22), `audit` the k-mer ridge regression "
        "(chr12-22). Designs: each run folder's samples.csv (the selected snapshot's samples "
        "when the run selected one). "
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__}. {args.note}".rstrip()
    )
    text = markdown(rows, header)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.md").write_text(text)
    payload = {"header": header, "runs": [f.name for f in args.runs], "rows": rows}
    (RESULTS / f"{args.name}.json").write_text(json.dumps(payload, indent=1) + "\n")
    print(text)


if __name__ == "__main__":
    main()
