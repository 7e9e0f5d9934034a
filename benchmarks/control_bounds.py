"""How much of a flow policy's action mass sits on the faces of the action box: clamping the
flow's samples (this project's first treatment) vs. ``tanh`` of an unbounded flow (today's).

    python benchmarks/control_bounds.py [--runs-dir outputs/benchmarks/control_learning] [--tag T]

For an untrained policy of each env (the flow's samples are its source noise, N(0, I)), and for
the last checkpoint of every GeMPO run found in ``--runs-dir`` (samples at 2,048 states drawn
from the run's own replay buffer), the share of actions with a coordinate at the box's face:
``|a| = 1`` after clamping, ``|a| >= 0.999`` after ``tanh``. For the trained runs also the
share of the actor update's candidates at a face: the run's frozen proposal with its proposal
noise on the action (the reference; clamped to ``|a| <= 0.999``) and on the latent. Writes
``benchmarks/results/control_bounds[_T].{json,md}``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from control.actors import AT_BOUND, NOISE_SPACES, FlowActor
from control.checkpoint import load_checkpoint
from control.evaluate import load_agent

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
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
    candidates = {}
    for space in NOISE_SPACES:
        actor.proposal_noise_space = space
        torch.manual_seed(0)
        at_face = actor.propose(obs).abs() >= AT_BOUND
        candidates[f"candidates_noise_on_{space}"] = float(at_face.any(-1).float().mean())
    return {
        "run": run.name,
        "env": cfg.env.id,
        "env_step": env_step,
        "proposal_noise": actor.proposal_noise,
        **shares(latents),
        **candidates,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--runs-dir", type=Path, default=REPO / "outputs/benchmarks/control_learning"
    )
    parser.add_argument("--states", type=int, default=2048)
    parser.add_argument("--tag", default=None, help="write control_bounds_<tag>.{json,md}")
    args = parser.parse_args()
    tag, suffix = (f" --tag {args.tag}", f"_{args.tag}") if args.tag else ("", "")
    out = RESULTS / f"control_bounds{suffix}"
    torch.manual_seed(0)
    untrained = [
        {"env": env, "act_dim": dim, **shares(torch.randn(100_000, dim))}
        for env, dim in ACT_DIMS.items()
    ]
    runs = sorted(p.parent.parent for p in args.runs_dir.glob("*gempo*/checkpoints/last.ckpt"))
    learned = [trained(run, args.states) for run in runs]
    out.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{out}.json").write_text(
        json.dumps({"untrained": untrained, "trained": learned}, indent=1) + "\n"
    )
    lines = [
        "# Actions on the faces of the action box",
        "",
        f"Written by `python benchmarks/control_bounds.py{tag}`."
        " Share of actions with a coordinate at a face: `|a| = 1` after clamping the flow's "
        f"sample, `|a| >= {AT_BOUND}` after tanh; for trained runs also the share of the actor "
        "update's candidates (the run's frozen proposal plus its proposal noise, on the action "
        f"and clamped to `|a| <= {AT_BOUND}` as in the reference, or on the latent).",
        "",
        "| policy | env | env steps | clamp | tanh | candidates, noise on action | on latent |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in untrained:
        lines.append(
            f"| untrained | {row['env']} | 0 | {row['clamp']:.1%} | {row['tanh']:.1%} | – | – |"
        )
    for row in learned:
        lines.append(
            f"| {row['run']} (trained with tanh) | {row['env']} | {row['env_step']} | "
            f"{row['clamp']:.1%} | {row['tanh']:.1%} | {row['candidates_noise_on_action']:.1%} | "
            f"{row['candidates_noise_on_latent']:.1%} |"
        )
    Path(f"{out}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
