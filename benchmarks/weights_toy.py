"""Every weight function, and every negative-mass stabiliser, on the two toy problems.

For each toy (the continuous 2-D bandit and the discrete motif bandit), weight function and
seed, fine-tune the base policy with GeMPO and record the final mean reward and diversity.
A second table compares the stabilisers of negative mass on the signed weights.

    python benchmarks/weights_toy.py [--seeds 3] [--steps 150]

Writes ``benchmarks/results/weights_toy.json``, ``benchmarks/results/weights_toy.md`` and
``docs/figures/weights_toy.png``.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
from pathlib import Path
from statistics import mean, stdev

import matplotlib
import torch

from gempo.losses import ReweightedLoss
from gempo.toys import ModesBandit2D, MotifBandit, run_toy
from gempo.weights import build_weight

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = {
    "exp": {"tau": 1.0},
    "linear": {"beta": 1.0},
    "linear_clip": {"beta": 1.0},
    "advantage": {"beta": 1.0},
    "tanh": {"beta": 1.0, "offset": 1.0},
    "sigmoid": {"beta": 2.0},
    "rank": {"scale": 1.0, "offset": 0.0},
    "topk": {"k": 16},
}
STABILISERS = {
    "clip+cap (default)": {"negative_loss_clip": 2.0, "max_negative_mass": 0.5},
    "clip only": {"negative_loss_clip": 2.0, "max_negative_mass": None},
    "cap only": {"negative_loss_clip": None, "max_negative_mass": 0.5},
    "none": {"negative_loss_clip": None, "max_negative_mass": None},
}
SIGNED = {"advantage": {"beta": 1.0}, "linear beta=3": {"beta": 3.0}}


def toys() -> dict[str, ModesBandit2D | MotifBandit]:
    return {"modes2d": ModesBandit2D(), "motif": MotifBandit()}


def summarize(runs: list) -> dict[str, float]:
    rewards = [r.final_reward for r in runs]
    diversity = [r.final_diversity for r in runs]
    return {
        "reward_mean": mean(rewards),
        "reward_std": stdev(rewards) if len(rewards) > 1 else 0.0,
        "diversity_mean": mean(diversity),
        "base_reward": runs[0].base_reward,
        "base_diversity": runs[0].base_diversity,
    }


def weight_table(seeds: int, steps: int) -> dict[str, dict[str, dict[str, float]]]:
    table: dict[str, dict[str, dict[str, float]]] = {}
    for toy_name, toy in toys().items():
        table[toy_name] = {}
        for name, kwargs in WEIGHTS.items():
            runs = [
                run_toy(toy, build_weight(name, **kwargs), steps=steps, seed=s)
                for s in range(seeds)
            ]
            table[toy_name][name] = summarize(runs)
            print(f"  {toy_name:8s} {name:12s} reward {table[toy_name][name]['reward_mean']:.3f}")
    return table


def stabiliser_table(seeds: int, steps: int) -> dict[str, dict[str, dict[str, float]]]:
    table: dict[str, dict[str, dict[str, float]]] = {}
    for toy_name, toy in toys().items():
        for weight_name, kwargs in SIGNED.items():
            weight = build_weight(weight_name.split()[0], **kwargs)
            row = f"{toy_name} / {weight_name}"
            table[row] = {}
            for stab_name, stab in STABILISERS.items():
                runs = [
                    run_toy(toy, weight, steps=steps, seed=s, loss=ReweightedLoss(**stab))
                    for s in range(seeds)
                ]
                table[row][stab_name] = summarize(runs)
                print(
                    f"  {row:28s} {stab_name:20s} reward {table[row][stab_name]['reward_mean']:.3f}"
                )
    return table


def markdown(weights: dict, stabilisers: dict, seeds: int, steps: int) -> str:
    lines = [
        f"Final mean reward ± std over {seeds} seeds ({steps} GeMPO steps), and diversity "
        "(2-D: mean pairwise distance; motif: mean pairwise Hamming fraction).",
        "",
        "| weight | modes2d reward | modes2d diversity | motif reward | motif diversity |",
        "|---|---|---|---|---|",
    ]
    base_c, base_d = weights["modes2d"]["exp"], weights["motif"]["exp"]
    lines.append(
        f"| base policy | {base_c['base_reward']:.3f} | {base_c['base_diversity']:.2f} "
        f"| {base_d['base_reward']:.3f} | {base_d['base_diversity']:.2f} |"
    )
    for name in WEIGHTS:
        c, d = weights["modes2d"][name], weights["motif"][name]
        lines.append(
            f"| {name} | {c['reward_mean']:.3f} ± {c['reward_std']:.3f} "
            f"| {c['diversity_mean']:.2f} | {d['reward_mean']:.3f} ± {d['reward_std']:.3f} "
            f"| {d['diversity_mean']:.2f} |"
        )
    lines += ["", "Negative-mass stabilisers on signed weights (final mean reward ± std):", ""]
    lines.append("| toy / weight | " + " | ".join(STABILISERS) + " |")
    lines.append("|---" * (len(STABILISERS) + 1) + "|")
    for row, cells in stabilisers.items():
        values = " | ".join(
            f"{c['reward_mean']:.3f} ± {c['reward_std']:.3f}" for c in cells.values()
        )
        lines.append(f"| {row} | {values} |")
    return "\n".join(lines) + "\n"


def plot(weights: dict, path: Path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    names = list(WEIGHTS)
    for ax, (toy_name, title) in zip(
        axes, [("modes2d", "2-D modes bandit"), ("motif", "motif bandit")], strict=True
    ):
        rows = weights[toy_name]
        ax.bar(
            names,
            [rows[n]["reward_mean"] for n in names],
            yerr=[rows[n]["reward_std"] for n in names],
        )
        ax.axhline(rows["exp"]["base_reward"], color="grey", linestyle="--", label="base policy")
        ax.set_title(title)
        ax.set_ylabel("final mean reward")
        ax.set_xlabel("weight function")
        ax.tick_params(axis="x", rotation=45)
        ax.legend(loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    print("weight functions:")
    weights = weight_table(args.seeds, args.steps)
    print("stabilisers:")
    stabilisers = stabiliser_table(args.seeds, args.steps)
    table = markdown(weights, stabilisers, args.seeds, args.steps)
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    record = {
        "seeds": args.seeds,
        "steps": args.steps,
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads",
        "torch": torch.__version__,
        "weights": weights,
        "stabilisers": stabilisers,
    }
    (args.out / "weights_toy.json").write_text(json.dumps(record, indent=2))
    (args.out / "weights_toy.md").write_text(table)
    plot(weights, ROOT / "docs" / "figures" / "weights_toy.png")


if __name__ == "__main__":
    main()
