"""How much of a flow policy's action mass sits on the faces of the action box: clamping the
flow's samples (this project's first treatment) vs. ``tanh`` of an unbounded flow (today's).

    python benchmarks/control_bounds.py [--runs-dir outputs/benchmarks/control_learning]

For an untrained policy of each env (the flow's samples are its source noise, N(0, I)), and for
the last checkpoint of every GeMPO run found in ``--runs-dir`` (samples at 2,048 states drawn
from the run's own replay buffer), the share of actions with a coordinate at the box's face:
``|a| = 1`` after clamping, ``|a| >= 0.999`` after ``tanh``. Writes
``benchmarks/results/control_bounds.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from control.actors import AT_BOUND, FlowActor
from control.checkpoint import load_checkpoint
from control.evaluate import load_agent

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "benchmarks" / "results" / "control_bounds"
ACT_DIMS = {"Hopper-v5": 3, "Walker2d-v5": 6, "HalfCheetah-v5": 6, "Ant-v5": 8}


def shares(latents: torch.Tensor) -> dict[str, float]:
    """Share of rows with a coordinate on a face, under each treatment: ``(rows, act_dim)``."""
    clamped = latents.clamp(-1.0, 1.0).abs() >= 1.0
    squashed = torch.tanh(latents).abs() >= AT_BOUND
    return {
        "clamp": float(clamped.any(-1).float().mean()),
        "tanh": float(squashed.any(-1).float().mean()),
    }


def trained(run: Path, states: int) -> dict:
    """Shares for the last checkpoint of one GeMPO run, at states from its replay buffer."""
    agent, cfg, env_step = load_agent(str(run), torch.device("cpu"))
    actor = agent.actor
    assert isinstance(actor, FlowActor)
    buffer = load_checkpoint(str(run))["buffer"]
    generator = torch.Generator().manual_seed(0)
    index = torch.randint(buffer["size"], (states,), generator=generator)
    obs = agent.normalizer(buffer["obs"][index])
    torch.manual_seed(0)
    latents = actor.sample_latents(actor.policy, obs)
    return {"run": run.name, "env": cfg.env.id, "env_step": env_step, **shares(latents)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--runs-dir", type=Path, default=REPO / "outputs/benchmarks/control_learning"
    )
    parser.add_argument("--states", type=int, default=2048)
    args = parser.parse_args()
    torch.manual_seed(0)
    untrained = [
        {"env": env, "act_dim": dim, **shares(torch.randn(100_000, dim))}
        for env, dim in ACT_DIMS.items()
    ]
    runs = sorted(p.parent.parent for p in args.runs_dir.glob("*gempo*/checkpoints/last.ckpt"))
    learned = [trained(run, args.states) for run in runs]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{OUT}.json").write_text(
        json.dumps({"untrained": untrained, "trained": learned}, indent=1) + "\n"
    )
    lines = [
        "# Actions on the faces of the action box",
        "",
        "Written by `python benchmarks/control_bounds.py`. Share of actions with a coordinate at "
        f"a face: `|a| = 1` after clamping the flow's sample, `|a| >= {AT_BOUND}` after tanh.",
        "",
        "| policy | env | env steps | clamp | tanh |",
        "|---|---|---|---|---|",
    ]
    for row in untrained:
        lines.append(f"| untrained | {row['env']} | 0 | {row['clamp']:.1%} | {row['tanh']:.1%} |")
    for row in learned:
        lines.append(
            f"| {row['run']} (trained with tanh) | {row['env']} | {row['env_step']} | "
            f"{row['clamp']:.1%} | {row['tanh']:.1%} |"
        )
    Path(f"{OUT}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
