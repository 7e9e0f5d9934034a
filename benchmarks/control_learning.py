"""Learning curves of GeMPO (and the SAC baseline on the same critic, buffer and evaluation) on
a short CPU budget, against a uniform-random policy under the same evaluation protocol.

    python benchmarks/control_learning.py --env inverted_pendulum --agent gempo --steps 8000

Writes ``benchmarks/results/control_learning_<env>_<agent>.json`` (the curve, the budget, the
settings and wall time) and, with ``--plot``, ``docs/figures/control_learning_<env>.png`` from
every result file of that env. The sizes are a CPU budget (``CPU_BUDGET``), smaller than the
defaults of ``configs/control_train.yaml``; the JSON records them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from hydra import compose, initialize_config_dir

from control.envs import ActionScaler, check_spaces, make_vector_env
from control.metrics import plot_learning_curves, read_eval_curve
from control.train import EVAL_SEED_OFFSET, train

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
FIGURES = REPO / "docs" / "figures"

CPU_BUDGET = [
    "batch_size=64",
    "critic.hidden=64",
    "agent.actor.hidden=64",
    "torch_threads=1",
    "device=cpu",
    "progress=false",
    "eval_episodes=10",
]
GEMPO_CPU = ["agent.actor.depth=2", "agent.actor.steps=5", "agent.actor.group_size=8"]


def random_policy_return(env_id: str, episodes: int, seed: int) -> tuple[float, float]:
    """Mean and std return of uniform random actions, episodes seeded as in evaluation."""
    envs = make_vector_env(env_id, episodes)
    spaces = check_spaces(env_id, envs.single_observation_space, envs.single_action_space)
    scaler, rng = ActionScaler(spaces.low, spaces.high), np.random.default_rng(seed)
    returns, running = np.zeros(episodes), np.ones(episodes, dtype=bool)
    envs.reset(seed=seed)
    while running.any():
        _, rewards, terminated, truncated, _ = envs.step(
            scaler.to_env(rng.uniform(-1, 1, (episodes, spaces.act_dim)))
        )
        returns += rewards * running
        running &= ~(terminated | truncated)
    envs.close()
    return float(returns.mean()), float(returns.std())


def run(
    env: str, agent: str, weight: str, steps: int, learning_starts: int, eval_every: int, seed: int
) -> dict:
    overrides = [
        f"env={env}",
        f"agent={agent}",
        f"weight={weight}",
        f"total_steps={steps}",
        f"seed={seed}",
        f"learning_starts={learning_starts}",
        f"eval_every={eval_every}",
        *CPU_BUDGET,
        *(GEMPO_CPU if agent == "gempo" else []),
    ]
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        cfg = compose("control_train", overrides=overrides)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as run_dir:
        result = train(cfg, Path(run_dir))
        curve = read_eval_curve(Path(run_dir) / "metrics.csv")
    wall = time.perf_counter() - start
    random_mean, random_std = random_policy_return(
        cfg.env.id, int(cfg.eval_episodes), seed + EVAL_SEED_OFFSET
    )
    return {
        "env": cfg.env.id,
        "agent": agent,
        "weight": weight if agent == "gempo" else None,
        "seed": seed,
        "env_steps": result.env_step,
        "grad_updates": result.grad_updates,
        "overrides": overrides,
        "wall_s": round(wall, 1),
        "env_steps_per_s": round(result.env_step / wall, 2),
        "machine": f"{platform.machine()} CPU, {os.cpu_count()} cores",
        "load_average_1min": os.getloadavg()[0],
        "torch_threads": torch.get_num_threads(),
        "random_return_mean": random_mean,
        "random_return_std": random_std,
        "final_return_mean": result.last_eval.return_mean,
        "final_return_std": result.last_eval.return_std,
        "best_return_mean": float(curve["return_mean"].max()),
        "curve": curve.to_dict(orient="list"),
    }


def plot(env: str) -> Path:
    curves, env_id = {}, env
    for path in sorted(RESULTS.glob(f"control_learning_{env}_*.json")):
        data = json.loads(path.read_text())
        env_id = data["env"]
        label = data["agent"] + (f" ({data['weight']})" if data["weight"] else "")
        curves[label] = pd.DataFrame(data["curve"])
    random_mean = data["random_return_mean"]
    out = plot_learning_curves(
        curves,
        FIGURES / f"control_learning_{env}.png",
        f"{env_id}, CPU budget (random: {random_mean:.0f})",
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--env", default="inverted_pendulum", help="an env config name")
    parser.add_argument("--agent", default="gempo", help="gempo or sac")
    parser.add_argument("--weight", default="linear", help="weight config for gempo")
    parser.add_argument("--steps", type=int, default=8000, help="env steps")
    parser.add_argument("--learning-starts", type=int, default=1000)
    parser.add_argument("--eval-every", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", action="store_true", help="only redraw the env's figure")
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    FIGURES.mkdir(parents=True, exist_ok=True)
    if not args.plot:
        data = run(
            args.env,
            args.agent,
            args.weight,
            args.steps,
            args.learning_starts,
            args.eval_every,
            args.seed,
        )
        suffix = args.agent + (f"_{args.weight}" if args.agent == "gempo" else "")
        path = RESULTS / f"control_learning_{args.env}_{suffix}.json"
        path.write_text(json.dumps(data, indent=2) + "\n")
        print(
            f"{data['env']} {suffix}: final {data['final_return_mean']:.1f} "
            f"± {data['final_return_std']:.1f}, best {data['best_return_mean']:.1f}, "
            f"random {data['random_return_mean']:.1f} -> {path}"
        )
    print(f"figure: {plot(args.env)}")


if __name__ == "__main__":
    main()
