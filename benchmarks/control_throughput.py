"""Environment steps per second *with learning*: GeMPO's CPU presets (``agent=gempo_cpu``,
``agent=gempo_cpu_n16`` and ``agent=gempo_cpu_refresh100``), the reference settings
(``agent=gempo``) and this project's SAC, next to Stable-Baselines3 SAC on the same env and
machine, in the same run, plus the time split of one update.

    python benchmarks/control_throughput.py [--env walker2d] [--steps 300] [--rounds 3]

Each agent first fills its buffer with ``--learning-starts`` random steps (not timed), then
every round times ``--steps`` env steps with one gradient update per step (actor updates from
the first step: ``agent.actor_starts=0``) for each agent in turn, so load on the machine
affects them alike; the median over rounds is reported. ``--reference-steps`` (default 20)
times the slow reference settings. ``--compile MODE`` adds this project's SAC and the reference
settings with ``compile=MODE``, timed in the same rounds (eager vs compiled). Writes
``benchmarks/results/control_throughput_<device>.json`` (``--tag NAME``:
``control_throughput_<device>_<NAME>.json``), with the commit of the ``control`` code it timed.
Code of another checkout is timed by this script with ``PYTHONPATH=<checkout>`` (a before/after
comparison, each against its own SB3 peer):

    PYTHONPATH=../old python benchmarks/control_throughput.py --tag before --threads 1

``--variant NAME OVERRIDE...`` (repeatable) also times the CPU preset with Hydra overrides, as
``gempo_cpu+NAME``, in the same rounds: the cost of a lever measured against the same peers,
named as in ``benchmarks/control_learning.py --variant``:

    python benchmarks/control_throughput.py --threads 1 --tag ab128 \
        --variant ab128 agent.actor.actor_batch=128

SB3 is optional (``pip install -e ".[baselines]"``); without it the SB3 column is skipped and
the script says so.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

import control
from control.agent import resolve_device
from control.train import Trainer
from gempo.errors import exit_on_user_error

REPO = Path(__file__).resolve().parents[1]
CODE = Path(control.__file__).resolve().parents[1]
"""The checkout whose code (and configs) are timed: this one, or another's on ``PYTHONPATH``."""


def ours_config(
    env: str,
    agent: str,
    learning_starts: int,
    device: str,
    threads: int | None,
    compile_mode: str | None = None,
    extra: Sequence[str] = (),
) -> DictConfig:
    """The composed ``control_train`` config of one timed agent (``extra``: a lever's
    overrides); a bad override stops here, before any buffer is filled."""
    overrides = [
        f"env={env}",
        f"agent={agent}",
        f"device={device}",
        f"compile={compile_mode or 'null'}",
        # the section timer synchronizes a GPU around each section: CPU only
        f"profile={str(device).startswith('cpu')}",
        "progress=false",
        f"learning_starts={learning_starts}",
        "agent.actor_starts=0",
        "total_steps=10000000",
        f"torch_threads={threads if threads else 'null'}",
        "plot=false",
        *extra,
    ]
    # Hydra's own API rather than gempo.runs.compose_config: checkouts older than it are timed too
    with initialize_config_dir(config_dir=str(CODE / "configs"), version_base="1.3"):
        return compose("control_train", overrides=overrides)


class Ours:
    """One of this project's agents, its buffer filled, ready to time env steps."""

    def __init__(self, cfg: DictConfig, extra: Sequence[str] = ()) -> None:
        self.cfg, self.extra = cfg, list(extra)
        self.tmp = tempfile.TemporaryDirectory()
        self.trainer = Trainer(self.cfg, Path(self.tmp.name))
        while self.trainer.state.env_step < cfg.learning_starts:  # fill the buffer, untimed
            self.trainer.step(self.trainer.act())
        self.trainer.learn()
        self.trainer.agent.timer.reset()

    def time(self, steps: int) -> float:
        """Env steps per second over ``steps`` steps with learning."""
        trainer = self.trainer
        synchronize(trainer.device)
        start = time.perf_counter()
        for _ in range(steps):
            trainer.step(trainer.act())
            trainer.learn()
        synchronize(trainer.device)
        return steps / (time.perf_counter() - start)

    def settings(self) -> dict:
        actor = self.cfg.agent.actor
        keys = ("hidden", "depth", "steps", "group_size", "actor_batch", "sample_dtype")
        return {
            "batch_size": self.cfg.batch_size,
            "critic_hidden": self.cfg.critic.hidden,
            "actor_every": self.cfg.agent.actor_every,
            **{k: actor[k] for k in keys if k in actor},
            **({"overrides": self.extra} if self.extra else {}),
        }

    def close(self) -> dict:
        split = self.trainer.agent.timer.mean_ms()
        self.trainer.logger.close()
        self.trainer.close()
        self.tmp.cleanup()
        return {k: round(v, 3) for k, v in split.items()}


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


class SB3SAC:
    """SB3 SAC (its defaults: 2 x 256, batch 256, one update per step), buffer filled."""

    def __init__(self, env_id: str, learning_starts: int, device: str) -> None:
        import gymnasium as gym
        from stable_baselines3 import SAC

        self.model = SAC(
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
        self.model.learn(total_timesteps=learning_starts + 1)  # fill the buffer, untimed

    def time(self, steps: int) -> float:
        start = time.perf_counter()
        self.model.learn(total_timesteps=steps, reset_num_timesteps=False)
        return steps / (time.perf_counter() - start)


def code_commit() -> str:
    """The commit of the checkout whose ``control`` package is imported (``+dirty`` when it
    has uncommitted changes), or ``unknown`` outside a git checkout."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", "-C", str(CODE), *args], capture_output=True, text=True)
        if done.returncode:
            raise OSError(done.stderr)
        return done.stdout.strip()

    try:
        head = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except OSError:
        return "unknown"
    return f"{head}+dirty" if dirty else head


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--env", default="walker2d", help="env config name")
    parser.add_argument("--steps", type=int, default=300, help="timed env steps per round")
    parser.add_argument("--reference-steps", type=int, default=20, help="... for agent=gempo")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, each agent in turn")
    parser.add_argument("--learning-starts", type=int, default=1000)
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's)"
    )
    parser.add_argument(
        "--compile",
        default=None,
        help="also time sac and gempo with compile=<mode> (reduce-overhead: CUDA graphs)",
    )
    parser.add_argument("--tag", default=None, help="suffix of the result file's name")
    parser.add_argument(
        "--variant",
        nargs="+",
        action="append",
        default=[],
        metavar=("NAME", "OVERRIDE"),
        help="also time agent=gempo_cpu with these Hydra overrides, as gempo_cpu+NAME",
    )
    args = parser.parse_args()
    for name, *overrides in args.variant:
        if not overrides or "=" in name:
            parser.error(f"--variant {name}: expected a name, then key=value overrides")
    return args


@exit_on_user_error
def main() -> None:
    args = parse_args()
    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    setup = (args.learning_starts, str(device), args.threads)
    presets = ("gempo_cpu", "gempo_cpu_n16", "gempo_cpu_refresh100", "sac", "gempo")
    configs = {name: ours_config(args.env, name, *setup) for name in presets}
    variants = {f"gempo_cpu+{name}": overrides for name, *overrides in args.variant}
    for name, overrides in variants.items():  # levers on the preset, timed in the same rounds
        configs[name] = ours_config(args.env, "gempo_cpu", *setup, extra=overrides)
    if args.compile:  # the same agents compiled, timed in the same rounds
        for name in ("sac", "gempo"):
            configs[f"{name}+{args.compile}"] = ours_config(
                args.env, name, *setup, compile_mode=args.compile
            )
    # every config composed before the first buffer is filled: a bad option stops at once
    agents = {name: Ours(cfg, variants.get(name, ())) for name, cfg in configs.items()}
    env_id = configs["gempo_cpu"].env.id
    if importlib.util.find_spec("stable_baselines3") is None:
        print(
            "stable-baselines3 is not installed: skipping the SB3 SAC baseline "
            '(pip install -e ".[baselines]")'
        )
    else:
        agents["sb3_sac"] = SB3SAC(env_id, args.learning_starts, str(device))
    rates: dict[str, list[float]] = {name: [] for name in agents}
    for round_ in range(args.rounds):
        for name, agent in agents.items():
            steps = args.reference_steps if name.split("+")[0] == "gempo" else args.steps
            rates[name].append(agent.time(steps))
            print(f"round {round_ + 1}: {name} {rates[name][-1]:.2f} env steps/s", flush=True)
    result = {
        "code": code_commit(),
        "env": env_id,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_1min": os.getloadavg()[0],
        "rounds": args.rounds,
        "timed_env_steps_per_round": {
            name: args.reference_steps if name.split("+")[0] == "gempo" else args.steps
            for name in agents
        },
    }
    for name, agent in agents.items():
        result[name] = {
            "env_steps_per_s": statistics.median(rates[name]),
            "per_round": [round(r, 2) for r in rates[name]],
        }
        if isinstance(agent, Ours):
            result[name].update(update_split_ms=agent.close(), settings=agent.settings())
    if "sb3_sac" in agents:
        sb3 = result["sb3_sac"]["env_steps_per_s"]
        result["ratio_to_sb3_sac"] = {
            name: round(result[name]["env_steps_per_s"] / sb3, 3) for name in agents
        }
    suffix = f"_{args.tag}" if args.tag else ""
    out = REPO / "benchmarks" / "results" / f"control_throughput_{device.type}{suffix}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(f"-> {out}")


if __name__ == "__main__":
    main()
