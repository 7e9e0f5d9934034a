"""Environment steps per second *with learning* for GeMPO at default settings vs.
Stable-Baselines3 SAC on the same env and machine, in the same run, plus the time split of
one GeMPO update (sampling N x K, critic, actor step).

    python benchmarks/control_throughput.py [--env hopper] [--steps 200] [--device auto]

Both agents first fill their buffers with ``--learning-starts`` random steps (not timed), then
the timed phase runs ``--steps`` env steps with one gradient update per step. Writes
``benchmarks/results/control_throughput_<device>.json``. SB3 is optional (``pip install
-e ".[baselines]"``); without it the SB3 column is skipped and the script says so.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

from control.agent import resolve_device
from control.train import Trainer

REPO = Path(__file__).resolve().parents[1]


def ours(
    env: str, agent: str, steps: int, learning_starts: int, device: str, threads: int | None
) -> dict:
    """Steps/s of this project's loop (act, step, store, update) and the update time split."""
    overrides = [
        f"env={env}",
        f"agent={agent}",
        f"device={device}",
        "profile=true",
        "progress=false",
        f"learning_starts={learning_starts}",
        f"total_steps={learning_starts + steps}",
        f"torch_threads={threads if threads else 'null'}",
        "plot=false",
    ]
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        cfg = compose("control_train", overrides=overrides)
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = Trainer(cfg, Path(run_dir))
        while trainer.state.env_step < learning_starts:  # fill the buffer, untimed
            trainer.step(trainer.act())
        trainer.learn()
        trainer.agent.timer.reset()
        if trainer.device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(steps):
            trainer.step(trainer.act())
            trainer.learn()
        if trainer.device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        split = trainer.agent.timer.mean_ms()
        trainer.logger.close()
        trainer.close()
    actor = cfg.agent.actor
    settings = {
        "batch_size": cfg.batch_size,
        "critic_hidden": cfg.critic.hidden,
        "actor_hidden": actor.hidden,
    }
    if agent == "gempo":
        settings.update(
            group_size=actor.group_size,
            euler_steps=actor.steps,
            act_candidates=actor.act_candidates,
        )
    return {
        "env_steps_per_s": steps / seconds,
        "update_split_ms": {k: round(v, 3) for k, v in split.items()},
        "settings": settings,
    }


def sb3_sac(env_id: str, steps: int, learning_starts: int, device: str) -> dict | None:
    """Steps/s of SB3 SAC (its defaults: 2 x 256, batch 256, one update per step)."""
    if importlib.util.find_spec("stable_baselines3") is None:
        print(
            "stable-baselines3 is not installed: skipping the SB3 SAC baseline "
            '(pip install -e ".[baselines]")'
        )
        return None
    import gymnasium as gym
    from stable_baselines3 import SAC

    model = SAC(
        "MlpPolicy",
        gym.make(env_id),
        learning_starts=learning_starts,
        batch_size=256,
        train_freq=1,
        gradient_steps=1,
        device=device,
        seed=0,
        verbose=0,
    )
    model.learn(total_timesteps=learning_starts + 1)  # fill the buffer, untimed
    start = time.perf_counter()
    model.learn(total_timesteps=steps, reset_num_timesteps=False)
    return {"env_steps_per_s": steps / (time.perf_counter() - start)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--env", default="hopper", help="env config name")
    parser.add_argument("--steps", type=int, default=200, help="timed env steps (with learning)")
    parser.add_argument("--learning-starts", type=int, default=1000)
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's)"
    )
    args = parser.parse_args()
    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        env_id = compose("control_train", overrides=[f"env={args.env}"]).env.id
    gempo = ours(args.env, "gempo", args.steps, args.learning_starts, str(device), args.threads)
    sac = ours(args.env, "sac", args.steps, args.learning_starts, str(device), args.threads)
    baseline = sb3_sac(env_id, args.steps, args.learning_starts, str(device))
    result = {
        "env": env_id,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_1min": os.getloadavg()[0],
        "timed_env_steps": args.steps,
        "gempo": gempo,
        "sac_same_code": sac,
        "sb3_sac": baseline,
        "gempo_over_sb3_sac": gempo["env_steps_per_s"] / baseline["env_steps_per_s"]
        if baseline
        else None,
    }
    out = REPO / "benchmarks" / "results" / f"control_throughput_{device.type}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(f"-> {out}")


if __name__ == "__main__":
    main()
