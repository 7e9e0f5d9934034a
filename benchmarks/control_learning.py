"""Learning at equal env steps: GeMPO (the CPU preset) vs this project's SAC, with
Stable-Baselines3 SAC as the anchor for this project's SAC, under one evaluation protocol.

    python benchmarks/control_learning.py run --envs hopper walker2d --seeds 0 1 2 \
        --agents gempo_cpu sac sb3_sac --steps 100000 --jobs 2
    python benchmarks/control_learning.py report

A lever is measured as a variant of an agent: ``--variant NAME --overrides KEY=VALUE ...`` adds the
overrides to this project's runs and records them as agent ``<agent>+<NAME>`` (its own result
files and rows), e.g. ``--agents gempo_cpu --variant lr3e-4 --overrides
agent.actor.optimizer.lr=3e-4``.

``run`` trains every (env, agent, seed) that has no result yet, ``--jobs`` at a time with one
torch thread each, in ``--runs-dir`` (default ``outputs/benchmarks/control_learning``). This
project's runs checkpoint at every evaluation and an interrupted one resumes from its last
checkpoint (exactly: ``python -m control.train resume=...``); an SB3 run restarts. Each finished
run writes ``benchmarks/results/control_learning/<env>_<agent>_seed<k>.json``: the curves, the
budget, the wall time, the machine, the overrides and the resolved ``agent`` and ``env``
settings (so that a file says what ran even if a preset's numbers change later; files written
before this was recorded have the overrides only). ``report`` reads those files and writes
``benchmarks/results/control_learning.{md,json}`` and ``docs/figures/control_learning.png``:
per env and agent the final return's mean and IQM over seeds with 95% percentile-bootstrap
intervals over seeds, for both evaluation rules, and the learning curves with 95% bands
(``benchmarks/aggregate.py``). ``report --seeds 0 1 2`` does the same over those seeds only,
into ``control_learning_seeds0-1-2.{md,json}`` and ``control_learning_seeds0-1-2.png``.

Protocol: ``--eval-every`` env steps, 10 episodes seeded ``seed + 10000 + i``; ``eval`` is each
agent's evaluation rule (GeMPO: best of 10 samples by min-Q; SAC: the mean action), ``eval_raw``
one plain policy sample for GeMPO (the mean action for SAC, as SAC has no other).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from aggregate import Run, group, markdown, plot, table
from omegaconf import OmegaConf

from control.metrics import read_eval_curve
from control.train import EVAL_SEED_OFFSET, train
from gempo.errors import GempoError, exit_on_user_error
from gempo.runs import compose_config

Variant = tuple[str | None, list[str]]  # (name, extra overrides) of a lever run

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "control_learning"
FIGURE = REPO / "docs" / "figures" / "control_learning.png"
COMMON = ["device=cpu", "torch_threads=1", "progress=false", "eval_episodes=10"]
UNRECORDED_JOBS = 2
"""Runs at a time of the result files written before they recorded it (all ran two at a time)."""
LAST_EVALS = 3
"""Evaluations averaged in the secondary statistic ``eval_last3`` (the final return stays the
protocol's headline: this shows how much one evaluation swings)."""


def compose_cfg(
    env: str, agent: str, seed: int, steps: int, eval_every: int, extra: list[str] = ()
):
    overrides = [
        f"env={env}",
        f"agent={agent}",
        f"seed={seed}",
        f"total_steps={steps}",
        f"eval_every={eval_every}",
        *COMMON,
        *extra,
    ]
    return compose_config("control_train", overrides), overrides


def machine() -> str:
    return f"{platform.machine()} CPU, {os.cpu_count()} cores, torch {torch.__version__}"


def label(agent: str, variant: str | None) -> str:
    """The agent's name in result files and tables: ``agent`` or ``agent+variant``."""
    return f"{agent}+{variant}" if variant else agent


def run_ours(
    env: str, agent: str, seed: int, steps: int, eval_every: int, runs: Path, variant: Variant
) -> dict:
    """Train (or resume) one of this project's runs; its curves and counters."""
    name, extra = variant
    cfg, overrides = compose_cfg(env, agent, seed, steps, eval_every, extra)
    run_dir = runs / f"{env}_{label(agent, name)}_seed{seed}"
    last = run_dir / "checkpoints" / "last.ckpt"
    if last.is_file():
        cfg.resume = str(run_dir)
    else:  # stopped before its first checkpoint: start it over
        cfg.overwrite = True
    start = time.perf_counter()
    result = train(cfg, run_dir)
    wall = time.perf_counter() - start
    curves = {p: read_eval_curve(run_dir / "metrics.csv", p) for p in ("eval", "eval_raw")}
    return {
        "env": cfg.env.id,
        "agent": label(agent, name),
        "seed": seed,
        "env_steps": result.env_step,
        "grad_updates": result.grad_updates,
        "overrides": overrides,
        "settings": {g: OmegaConf.to_container(cfg[g], resolve=True) for g in ("agent", "env")},
        "wall_s_this_process": round(wall, 1),
        "resumed": bool(cfg.get("resume")),
        "curves": {p: c.to_dict(orient="list") for p, c in curves.items()},
    }


def run_sb3(env: str, seed: int, steps: int, eval_every: int) -> dict:
    """Stable-Baselines3 SAC (its defaults, ``learning_starts`` as ours), evaluated with its
    deterministic (mean) action on the same seeded episodes."""
    import gymnasium as gym
    from stable_baselines3 import SAC
    from stable_baselines3.common.callbacks import BaseCallback

    from control.envs import make_vector_env

    cfg, _ = compose_cfg(env, "sac", seed, steps, eval_every)
    eval_envs = make_vector_env(cfg.env.id, int(cfg.eval_episodes))
    rows: list[dict] = []

    def evaluate(model: SAC, env_step: int) -> None:
        returns, running = np.zeros(eval_envs.num_envs), np.ones(eval_envs.num_envs, dtype=bool)
        obs, _ = eval_envs.reset(seed=seed + EVAL_SEED_OFFSET)
        while running.any():
            actions, _ = model.predict(obs, deterministic=True)
            obs, rewards, terminated, truncated, _ = eval_envs.step(actions)
            returns += rewards * running
            running &= ~(terminated | truncated)
        rows.append(
            {"env_step": env_step, "return_mean": returns.mean(), "return_std": returns.std()}
        )

    class Every(BaseCallback):
        def _on_step(self) -> bool:
            if self.num_timesteps % eval_every == 0:
                evaluate(self.model, self.num_timesteps)
            return True

    start = time.perf_counter()
    model = SAC(
        "MlpPolicy",
        gym.make(cfg.env.id),
        learning_starts=int(cfg.learning_starts),
        seed=seed,
        device="cpu",
        verbose=0,
    )
    model.learn(total_timesteps=steps, callback=Every())
    wall = time.perf_counter() - start
    eval_envs.close()
    curve = pd.DataFrame(rows).to_dict(orient="list")
    return {
        "env": cfg.env.id,
        "agent": "sb3_sac",
        "seed": seed,
        "env_steps": steps,
        "grad_updates": int(model._n_updates),
        "overrides": [f"learning_starts={cfg.learning_starts}", "SB3 SAC defaults otherwise"],
        "wall_s_this_process": round(wall, 1),
        "resumed": False,
        "curves": {"eval": curve, "eval_raw": curve},
    }


def one_run(
    env: str,
    agent: str,
    seed: int,
    steps: int,
    eval_every: int,
    runs: str,
    variant: Variant,
    jobs: int,
) -> Path:
    """One run in a worker process (one torch thread); writes and returns its result file."""
    torch.set_num_threads(1)
    if agent == "sb3_sac":
        data = run_sb3(env, seed, steps, eval_every)
    else:
        data = run_ours(env, agent, seed, steps, eval_every, Path(runs), variant)
    data.update(machine=machine(), torch_threads=1, budget_env_steps=steps, jobs=jobs)
    path = RESULTS / f"{env}_{data['agent']}_seed{seed}.json"
    path.write_text(json.dumps(data, indent=1) + "\n")
    return path


def run(args: argparse.Namespace) -> None:
    if bool(args.variant) != bool(args.overrides):
        raise GempoError("--variant NAME and --overrides KEY=VALUE ... go together")
    if args.variant and "sb3_sac" in args.agents:
        raise GempoError("--variant applies to this project's agents, not sb3_sac")
    RESULTS.mkdir(parents=True, exist_ok=True)
    variant = (args.variant, list(args.overrides or []))
    todo = [
        (env, agent, seed)
        for seed in args.seeds
        for env in args.envs
        for agent in args.agents
        if not (RESULTS / f"{env}_{label(agent, args.variant)}_seed{seed}.json").is_file()
    ]
    for env, agent, seed in todo:  # a bad override stops here, before any run starts
        if agent != "sb3_sac":
            compose_cfg(env, agent, seed, args.steps, args.eval_every, variant[1])
    print(f"{len(todo)} runs to do, {args.jobs} at a time: {todo}", flush=True)
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        futures = {
            pool.submit(
                one_run, *job, args.steps, args.eval_every, str(args.runs_dir), variant, args.jobs
            ): job
            for job in todo
        }
        for future in as_completed(futures):
            print(f"{futures[future]} -> {future.result()}", flush=True)


def as_runs(results: list[dict]) -> list[Run]:
    """The result files as :class:`aggregate.Run` records: task = env, method = agent, final
    ``eval`` (the evaluation rule) and ``eval_raw`` (one sample) returns, and ``eval_last3``:
    the mean of the evaluation rule's last :data:`LAST_EVALS` evaluations."""
    return [
        Run(
            task=data["env"],
            method=data["agent"],
            seed=data["seed"],
            finals={
                **{p: data["curves"][p]["return_mean"][-1] for p in ("eval", "eval_raw")},
                f"eval_last{LAST_EVALS}": float(
                    np.mean(data["curves"]["eval"]["return_mean"][-LAST_EVALS:])
                ),
            },
            curve=pd.DataFrame(data["curves"]["eval"])[["env_step", "return_mean"]].to_numpy(),
            x_label="environment steps",
            meta={
                "env_steps": data["env_steps"],
                "wall_s": data["wall_s_this_process"],
                "resumed": data["resumed"],
                "machine": data["machine"],
                "jobs": data.get("jobs", UNRECORDED_JOBS),
            },
        )
        for data in results
    ]


def report(args: argparse.Namespace) -> None:
    """The tables and the figure, over every seed or (``--seeds``) over the given seeds only,
    into files named after them: the same-seed comparison of levers run on those seeds."""
    results = [json.loads(p.read_text()) for p in sorted(RESULTS.glob("*.json"))]
    if args.seeds:
        results = [data for data in results if data["seed"] in args.seeds]
    if not results:
        seeds = f" of seeds {args.seeds}" if args.seeds else ""
        raise GempoError(f"no results{seeds} in {RESULTS}; run `control_learning.py run` first")
    suffix = f"_seeds{'-'.join(map(str, args.seeds))}" if args.seeds else ""
    command = f"report --seeds {' '.join(map(str, args.seeds))}" if args.seeds else "report"
    runs = as_runs(results)
    rows = table(runs)
    walls = [
        "| env | agent | seed | env steps | wall (h) | runs at a time |",
        "|---|---|---|---|---|---|",
    ]
    for (env, agent), members in group(runs).items():
        for run in members:
            resumed = " (resumed)" if run.meta["resumed"] else ""
            walls.append(
                f"| {env} | {agent} | {run.seed} | {run.meta['env_steps']} | "
                f"{run.meta['wall_s'] / 3600:.2f}{resumed} | {run.meta['jobs']} |"
            )
    machines = sorted({r.meta["machine"] for r in runs})
    text = (
        "# Control: learning at equal env steps\n\n"
        f"Written by `python benchmarks/control_learning.py {command}` from "
        "`benchmarks/results/control_learning/*.json`. Final evaluation return (10 episodes) "
        "per run; mean and IQM over seeds with 95% percentile-bootstrap intervals over seeds "
        "(`benchmarks/aggregate.py`). "
        "`eval`: each agent's evaluation rule (GeMPO best of 10 samples by min-Q, SAC its mean "
        "action); `eval_raw`: one GeMPO policy sample (SAC: the mean action again); "
        f"`eval_last{LAST_EVALS}`: the mean of the evaluation rule's last {LAST_EVALS} "
        "evaluations of each run (at the default budget: 80k, 90k and 100k env steps), a "
        "secondary statistic that shows how much one evaluation swings; the final return "
        "(`eval`) is the protocol's. With 3 seeds the IQM trims no seed and equals the mean. "
        "Machine: "
        f"{'; '.join(machines)}; one torch thread per run, runs at a time as in the wall-time "
        "table. "
        "An agent `<agent>+<variant>` is the agent with the overrides in its result files' "
        "`overrides` (a lever measured against the preset).\n\n"
        + markdown(rows, ["eval", "eval_raw", f"eval_last{LAST_EVALS}"])
        + "\nWall time per run; a resumed run's counts only the process that finished it.\n\n"
        + "\n".join(walls)
        + "\n"
    )
    out = RESULTS.parent / f"control_learning{suffix}"
    Path(f"{out}.md").write_text(text)
    Path(f"{out}.json").write_text(json.dumps(rows, indent=1) + "\n")
    print(text)
    figure = FIGURE.with_stem(FIGURE.stem + suffix)
    print(f"figure: {plot(runs, figure, 'evaluation return (eval rule)')}")


@exit_on_user_error
def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    go = sub.add_parser("run", help="train the runs that have no result yet")
    go.add_argument("--envs", nargs="+", default=["hopper", "walker2d"])
    go.add_argument("--agents", nargs="+", default=["gempo_cpu", "sac", "sb3_sac"])
    go.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    go.add_argument("--steps", type=int, default=100_000, help="env steps per run")
    go.add_argument("--eval-every", type=int, default=10_000)
    go.add_argument("--jobs", type=int, default=2, help="runs at a time")
    go.add_argument("--runs-dir", type=Path, default=REPO / "outputs/benchmarks/control_learning")
    go.add_argument("--variant", help="name of a lever: results go to agent <agent>+<variant>")
    go.add_argument("--overrides", nargs="+", help="the variant's config overrides KEY=VALUE")
    tables = sub.add_parser("report", help="tables and the figure from the result files")
    tables.add_argument("--seeds", nargs="+", type=int, help="these seeds only (default: all)")
    args = parser.parse_args()
    run(args) if args.command == "run" else report(args)


if __name__ == "__main__":
    main()
