"""How much of the data a pretrained generator knows (simulated world): its NELBO on fresh
sequences against the entropy of the simulator's background chain, and its samples' true
HepG2 activity and motif sites against fresh data's.

    python benchmarks/generator_quality.py                                   # the shipped one
    python benchmarks/generator_quality.py dna/assets/generator/pretrained_small.pt \
        outputs/dna_pretrain/small-long/generator.pt --name generator_quality
    python benchmarks/generator_quality.py outputs/dna_pretrain/drakes-seed0/generator.pt \
        --device cuda                                                        # on a GPU

A generator that learned only the background has a NELBO at the background chain's entropy
and samples with next to no activity; one that knows the planted motifs sits below that
entropy and samples sequences whose truth and sites look like the data's. Rows: fresh simulated
sequences (``--fresh`` of them, a seed nothing trained on), then each generator
(``--samples`` samples, its own sampling steps unless ``--steps``). Writes
``benchmarks/results/<name>.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
from pathlib import Path
from typing import Any

import numpy as np
import torch
from dna_weights import REPO, RESULTS

from dna.model import SequenceGenerator, load_generator
from dna.sequences import encode
from dna.simulator import (
    BACKGROUND,
    DINUCLEOTIDES,
    MOTIFS_BY_CELL_TYPE,
    motif_counts,
    simulate_sequences,
    true_activity,
)
from gempo.nets import module_device
from gempo.samplers import masked_nelbo

SHIPPED = REPO / "dna" / "assets" / "generator" / "pretrained_small.pt"


def entropy(probs: np.ndarray) -> float:
    """Shannon entropy (nats) of a distribution ``(k,)``."""
    return float(-(probs * np.log(probs)).sum())


def background_entropy(length: int) -> float:
    """Entropy (nats per sequence of ``length``) of the background chain without its per-sequence
    GC tilt: the first base from ``BACKGROUND``, then the dinucleotide transitions at their
    stationary distribution."""
    transition = DINUCLEOTIDES / DINUCLEOTIDES.sum(1, keepdims=True)
    values, vectors = np.linalg.eig(transition.T)
    stationary = np.real(vectors[:, np.argmin(np.abs(values - 1.0))])
    stationary = stationary / stationary.sum()
    rate = sum(p * entropy(row) for p, row in zip(stationary, transition, strict=True))
    return entropy(BACKGROUND) + (length - 1) * rate


def sample_statistics(
    tokens: torch.Tensor, data_top: float, truth: np.ndarray | None = None
) -> dict[str, Any]:
    """True HepG2 activity quantiles and motif sites of a sequence set ``(num, length)``;
    ``truth``: its true HepG2 activity ``(num,)`` when already computed."""
    truth = true_activity(tokens)[:, 0] if truth is None else truth
    sites = motif_counts(tokens)
    hepg2 = sites[list(MOTIFS_BY_CELL_TYPE["hepg2"])].sum(axis=1).to_numpy()
    return {
        "true_median": float(np.median(truth)),
        "true_p90": float(np.quantile(truth, 0.9)),
        "true_p99": float(np.quantile(truth, 0.99)),
        "true_above_data_p99_percent": float(100 * np.mean(truth > data_top)),
        "hepg2_sites_mean": float(hepg2.mean()),
        "with_hepg2_site_percent": float(100 * np.mean(hepg2 > 0)),
        "all_sites_mean": float(sites.to_numpy().sum(axis=1).mean()),
    }


@torch.no_grad()
def nelbo(
    generator: SequenceGenerator, tokens: torch.Tensor, times: int, batch_size: int
) -> tuple[float, float]:
    """The generator's mean NELBO (nats per sequence) over ``tokens`` ``(num, length)``, computed
    on the generator's device, and its standard error."""
    device = module_device(generator)
    values = torch.cat(
        [
            masked_nelbo(
                generator.denoiser, generator.path, tokens[i : i + batch_size].to(device), times
            )
            for i in range(0, len(tokens), batch_size)
        ]
    )
    return float(values.mean()), float(values.std() / math.sqrt(len(values)))


def markdown(rows: list[dict[str, Any]], header: str) -> str:
    """The table: data first, then each generator."""
    lines = [
        header,
        "",
        "| set | NELBO (nats / seq) ± s.e. | bits / base | true median | true p90 | true p99 | "
        "true > data's p99 (%) | HepG2 sites / seq | with a HepG2 site (%) | all sites / seq |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        fit = (
            f"{row['nelbo']:.1f} ± {row['nelbo_se']:.1f} | {row['bits_per_base']:.3f}"
            if "nelbo" in row
            else "– | –"
        )
        lines.append(
            f"| {row['set']} | {fit} | {row['true_median']:.2f} | {row['true_p90']:.2f} | "
            f"{row['true_p99']:.2f} | {row['true_above_data_p99_percent']:.1f} | "
            f"{row['hepg2_sites_mean']:.2f} | {row['with_hepg2_site_percent']:.1f} | "
            f"{row['all_sites_mean']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("generators", nargs="*", type=Path, default=[SHIPPED])
    parser.add_argument("--fresh", type=int, default=2000, help="fresh simulated sequences")
    parser.add_argument("--fresh-seed", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=1000, help="samples per generator")
    parser.add_argument("--times", type=int, default=16, help="mask levels per NELBO estimate")
    parser.add_argument("--batch-size", type=int, default=250)
    parser.add_argument("--seed", type=int, default=0, help="sampling seed")
    parser.add_argument("--steps", type=int, help="sampling steps (default: each file's own)")
    parser.add_argument("--name", default="generator_quality", help="stem of the result files")
    parser.add_argument("--device", default="cpu", help="where the generators run, e.g. cuda")
    args = parser.parse_args()
    try:
        device = torch.device(args.device)
    except RuntimeError:
        parser.error(f"--device {args.device!r}: expected a torch device such as cpu or cuda")
    fresh = encode(simulate_sequences(args.fresh, seed=args.fresh_seed))
    length = fresh.shape[1]
    fresh_truth = true_activity(fresh)[:, 0]
    data_top = float(np.quantile(fresh_truth, 0.99))
    rows = [
        {
            "set": f"data: {args.fresh} fresh simulated sequences (seed {args.fresh_seed})",
            **sample_statistics(fresh, data_top, fresh_truth),
        }
    ]
    for path in args.generators:
        generator = load_generator(path, steps=args.steps).to(device).eval()
        torch.manual_seed(args.fresh_seed)  # the same masks for every generator's NELBO
        mean, se = nelbo(generator, fresh, args.times, args.batch_size)
        torch.manual_seed(args.seed)
        tokens = generator.sample_tokens(args.samples, args.batch_size, device).cpu()
        resolved = path.resolve()
        name = resolved.relative_to(REPO) if resolved.is_relative_to(REPO) else path
        rows.append(
            {
                "set": f"generator: {name}",
                "nelbo": mean,
                "nelbo_se": se,
                "bits_per_base": mean / (math.log(2.0) * length),
                **sample_statistics(tokens, data_top),
            }
        )
    floor = background_entropy(length)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "the CPU"
    header = (
        "# What the pretrained generator knows (simulated world, objective: HepG2 activity)\n\n"
        "Written by `python benchmarks/generator_quality.py`. NELBO: the negative ELBO of the "
        f"fresh sequences under each generator ({args.times} stratified mask levels per "
        "sequence, the same masks for every generator). The simulator's background chain alone "
        f"(first-order dinucleotide Markov chain, without its per-sequence GC tilt) has an "
        f"entropy of {floor:.1f} nats per {length} bp ({floor / (math.log(2.0) * length):.3f} "
        "bits/base): a generator at or above it has learned no more than the background. "
        f"Samples: {args.samples} per generator (seed {args.seed}, "
        f"{args.steps or 'its own'} sampling steps); truth from the simulator; sites: the "
        "simulator's PWM hits (either strand) of "
        "the HepG2 factors and of all factors. 'data's p99': the fresh sequences' 99th "
        f"percentile of the truth ({data_top:.2f}). Machine: {platform.machine()}, "
        f"{os.cpu_count()} cores, {torch.get_num_threads()} torch threads, torch "
        f"{torch.__version__}, generators on {where}."
    )
    text = markdown(rows, header)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.md").write_text(text)
    payload = {"header": header, "background_entropy": floor, "rows": rows}
    (RESULTS / f"{args.name}.json").write_text(json.dumps(payload, indent=1) + "\n")
    print(text)


if __name__ == "__main__":
    main()
