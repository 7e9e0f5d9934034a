"""``python -m control.train env=walker2d``: online GeMPO (or SAC, ``agent=sac``) on a MuJoCo
task.

The loop reads in the algorithm's order: act, step, store, update (critic, then actor), log;
every ``eval_every`` env steps it evaluates on a separate env and writes a checkpoint. Env
steps (transitions collected, summed over vectorized envs) and gradient updates are counted
and logged separately.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from control.agent import ActorCritic, build_agent, resolve_device
from control.checkpoint import LAST, load_checkpoint, save_checkpoint
from control.envs import (
    ActionScaler,
    EnvSpaces,
    as_tensor,
    check_spaces,
    make_vector_env,
    restore_vector_env,
    snapshot_vector_env,
)
from control.evaluation import EvalResult, evaluate
from control.metrics import MetricsLogger, plot_learning_curves, read_eval_curve
from control.replay import ReplayBuffer, Transitions
from gempo.errors import GempoError
from gempo.runs import check_minimums, claim_run_dir, config_number, hydra_main, run_directory

log = logging.getLogger(__name__)

RESUME_OVERRIDES = (
    "total_steps",
    "device",
    "torch_threads",
    "progress",
    "plot",
    "profile",
    "compile",
    "overwrite",
)
"""Config keys a resumed run takes from its command line; everything else comes from the
checkpoint, so the run continues exactly."""

EVAL_SEED_OFFSET = 10_000


@dataclass
class LoopState:
    """Counters and per-env episode accumulators of the training loop."""

    env_step: int = 0
    next_eval: int = 0
    update_credit: float = 0.0
    episode_returns: np.ndarray = field(default_factory=lambda: np.zeros(0))
    episode_lengths: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))


@dataclass
class TrainResult:
    """What a run produced: counters, the last evaluation and the files written."""

    run_dir: Path
    env_step: int
    grad_updates: int
    last_eval: EvalResult
    checkpoint: Path
    plot: Path | None


def check_config(cfg: DictConfig) -> None:
    """One-line :class:`GempoError` for values the loop cannot run with."""
    minimums = {
        "total_steps": 1,
        "batch_size": 1,
        "eval_every": 1,
        "eval_episodes": 1,
        "buffer_size": 1,
        "log_every": 1,
        "learning_starts": 1,
        "agent.actor_starts": 0,
        "agent.actor_every": 1,
    }
    check_minimums(cfg, minimums)
    if int(cfg.total_steps) < int(cfg.learning_starts):
        raise GempoError(
            f"total_steps={cfg.total_steps} is below learning_starts={cfg.learning_starts}: "
            "no gradient update would run; raise total_steps or lower learning_starts"
        )
    if not config_number(cfg, "updates_per_step") > 0:
        raise GempoError(f"updates_per_step must be > 0, got {cfg.updates_per_step}")
    for key in ("gamma", "tau"):
        config_number(cfg, key)


def resumes_into(resume: str | None, run_dir: Path) -> bool:
    """Whether ``resume`` (a run folder or a checkpoint) is ``run_dir`` or inside it."""
    if resume is None:
        return False
    target, folder = Path(str(resume)).resolve(), run_dir.resolve()
    return target == folder or folder in target.parents


def resume_own_folder(cfg: DictConfig, run_dir: Path) -> tuple[DictConfig, bool]:
    """``resume=true``: continue ``run_dir``'s own last checkpoint, or start fresh there when it
    has none yet (a requeued cluster job runs again with the same overrides). Other values of
    ``resume`` (a run folder or a ``.ckpt``) pass through. Also returns whether the run
    continues in ``run_dir`` (so its files there are its own)."""
    if str(cfg.get("resume")).lower() != "true":
        return cfg, resumes_into(cfg.get("resume"), run_dir)
    cfg = cfg.copy()
    cfg.resume = str(run_dir) if (run_dir / "checkpoints" / LAST).is_file() else None
    return cfg, True


def resolve_config(cfg: DictConfig) -> tuple[DictConfig, dict | None]:
    """The run's config and, when resuming, the checkpoint (whose config wins except for
    :data:`RESUME_OVERRIDES`)."""
    if cfg.get("resume") is None:
        return cfg, None
    checkpoint = load_checkpoint(cfg.resume)
    saved = OmegaConf.create(checkpoint["config"])
    for key in RESUME_OVERRIDES:
        saved[key] = cfg[key]
    saved.resume = cfg.resume
    return saved, checkpoint


class Trainer:
    """Holds the envs, agent, buffer and logger of one run, and runs its loop."""

    def __init__(self, cfg: DictConfig, run_dir: Path) -> None:
        cfg, continues_here = resume_own_folder(cfg, run_dir)
        claim_run_dir(
            run_dir,
            continues_here,
            bool(cfg.overwrite),
            resume_hint=f"resume={run_dir}",
        )
        cfg, checkpoint = resolve_config(cfg)
        check_config(cfg)
        self.cfg = cfg
        self.run_dir = run_dir
        self.device = resolve_device(cfg.device)
        if cfg.get("torch_threads") is not None:
            torch.set_num_threads(int(cfg.torch_threads))
        torch.manual_seed(cfg.seed)
        env_kwargs = OmegaConf.to_container(cfg.env.kwargs) if cfg.env.get("kwargs") else {}
        self.envs = make_vector_env(cfg.env.id, cfg.env.num_envs, env_kwargs)
        self.eval_envs = make_vector_env(cfg.env.id, cfg.eval_episodes, env_kwargs)
        self.spaces: EnvSpaces = check_spaces(
            cfg.env.id, self.envs.single_observation_space, self.envs.single_action_space
        )
        self.scaler = ActionScaler(self.spaces.low, self.spaces.high)
        self.agent: ActorCritic = build_agent(
            cfg, self.spaces.obs_dim, self.spaces.act_dim, self.device
        )
        capacity = min(int(cfg.buffer_size), int(cfg.total_steps))
        self.buffer = ReplayBuffer(capacity, self.spaces.obs_dim, self.spaces.act_dim, self.device)
        num_envs = int(cfg.env.num_envs)
        self.state = LoopState(
            next_eval=int(cfg.eval_every),
            episode_returns=np.zeros(num_envs),
            episode_lengths=np.zeros(num_envs, dtype=np.int64),
        )
        obs, _ = self.envs.reset(seed=int(cfg.seed))
        self.obs = as_tensor(obs, self.device)
        self.agent.normalizer.update(self.obs)
        history = self.restore(checkpoint) if checkpoint is not None else None
        self.logger = MetricsLogger(run_dir, history)
        self.last_eval: EvalResult | None = None
        self.last_checkpoint: Path | None = None
        OmegaConf.save(cfg, run_dir / "config.yaml")

    # ---- checkpoints -------------------------------------------------------------------
    def checkpoint_state(self) -> dict:
        """Everything an exact resume needs (the buffer only with ``checkpoint.save_buffer``)."""
        s = self.state
        rng = {"torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return {
            "config": OmegaConf.to_yaml(self.cfg, resolve=True),
            "env_step": s.env_step,
            "grad_updates": self.agent.updates,
            "next_eval": s.next_eval,
            "update_credit": s.update_credit,
            "episode_returns": torch.from_numpy(s.episode_returns.copy()),
            "episode_lengths": torch.from_numpy(s.episode_lengths.copy()),
            "obs": self.obs.cpu(),
            "envs": snapshot_vector_env(self.envs),
            "agent": self.agent.checkpoint_state(),
            "buffer": self.buffer.state_dict() if self.cfg.checkpoint.save_buffer else None,
            "rng": rng,
            "eval_history": self.logger.eval_rows(),
        }

    def restore(self, checkpoint: dict) -> list[dict]:
        """Load a checkpoint into the freshly built run; returns its metric history."""
        self.agent.load_checkpoint_state(checkpoint["agent"])
        if checkpoint["buffer"] is not None:
            self.buffer.load_state_dict(checkpoint["buffer"])
        restore_vector_env(self.envs, checkpoint["envs"])
        self.obs = checkpoint["obs"].to(self.device)
        self.state = LoopState(
            env_step=checkpoint["env_step"],
            next_eval=checkpoint["next_eval"],
            update_credit=checkpoint["update_credit"],
            episode_returns=checkpoint["episode_returns"].numpy().copy(),
            episode_lengths=checkpoint["episode_lengths"].numpy().copy(),
        )
        torch.set_rng_state(checkpoint["rng"]["torch"])
        if "cuda" in checkpoint["rng"] and self.device.type == "cuda":
            torch.cuda.set_rng_state(checkpoint["rng"]["cuda"], self.device)
        return checkpoint["eval_history"]

    # ---- the loop ----------------------------------------------------------------------
    def act(self) -> torch.Tensor:
        """Uniform random actions before ``learning_starts``, then the behaviour policy."""
        if self.state.env_step < int(self.cfg.learning_starts):
            return torch.rand(self.envs.num_envs, self.spaces.act_dim, device=self.device) * 2 - 1
        return self.agent.act(self.obs, "explore")

    def step(self, actions: torch.Tensor) -> list[float]:
        """Step the envs, store the transitions; returns the returns of finished episodes."""
        next_obs, rewards, terminated, truncated, info = self.envs.step(
            self.scaler.to_env(actions.cpu().numpy())
        )
        # with same-step autoreset a finished env already shows its next episode's first
        # observation; the transition must end in the episode's real last observation
        final_next = next_obs.copy()
        if "final_obs" in info:
            for i in np.flatnonzero(info["_final_obs"]):
                final_next[i] = info["final_obs"][i]
        self.buffer.add(
            Transitions(
                obs=self.obs,
                actions=actions,
                rewards=as_tensor(rewards, self.device),
                next_obs=as_tensor(final_next, self.device),
                terminated=as_tensor(terminated, self.device),  # truncation still bootstraps
            )
        )
        self.obs = as_tensor(next_obs, self.device)
        self.agent.normalizer.update(self.obs)
        s = self.state
        s.env_step += self.envs.num_envs
        s.episode_returns += rewards
        s.episode_lengths += 1
        done = terminated | truncated
        finished = s.episode_returns[done].tolist()
        s.episode_returns[done] = 0.0
        s.episode_lengths[done] = 0
        return finished

    def learn(self) -> dict[str, torch.Tensor]:
        """``updates_per_step`` gradient updates per env step collected (fractions carried);
        the actor's start after ``agent.actor_starts`` env steps (before: the critic's warm-up)."""
        s = self.state
        if s.env_step < int(self.cfg.learning_starts):
            return {}
        s.update_credit += self.envs.num_envs * float(self.cfg.updates_per_step)
        update_actor = s.env_step >= int(self.cfg.agent.actor_starts)
        stats: dict[str, torch.Tensor] = {}  # the latest value of each stat, the actor's too
        while s.update_credit >= 1.0:
            stats.update(
                self.agent.update(self.buffer.sample(int(self.cfg.batch_size)), update_actor)
            )
            s.update_credit -= 1.0
        return stats

    def evaluate_and_checkpoint(self) -> EvalResult:
        """Evaluate on the separate env with both rules (``eval/``: the evaluation rule,
        ``eval_raw/``: one plain policy sample), log, write the checkpoint."""
        seed = int(self.cfg.seed) + EVAL_SEED_OFFSET
        result = evaluate(self.agent, self.eval_envs, self.scaler, seed, self.device, "eval")
        raw = (
            result
            if self.agent.actor.RAW_IS_EVAL
            else evaluate(self.agent, self.eval_envs, self.scaler, seed, self.device, "eval_raw")
        )
        metrics = {**result.metrics("eval"), **raw.metrics("eval_raw")}
        self.logger.log(metrics, self.state.env_step, self.agent.updates)
        log.info(
            "env step %d: eval return %.1f ± %.1f (best of candidates), %.1f ± %.1f (one sample)",
            self.state.env_step,
            result.return_mean,
            result.return_std,
            raw.return_mean,
            raw.return_std,
        )
        self.last_eval = result
        self.last_checkpoint = save_checkpoint(
            self.checkpoint_state(), self.run_dir / "checkpoints"
        )
        return result

    def progress_bar(self) -> tqdm:
        """A bar for the current phase. The warm-up (random actions, then critic-only updates
        until ``agent.actor_starts``) runs many times faster than training, so it has its own bar:
        the training bar's rate and ETA are measured on full updates only."""
        s, total = self.state, int(self.cfg.total_steps)
        warmup = min(max(int(self.cfg.learning_starts), int(self.cfg.agent.actor_starts)), total)
        in_warmup = s.env_step < warmup
        return tqdm(
            total=warmup if in_warmup else total,
            initial=s.env_step,
            desc="warm-up" if in_warmup else "training",
            disable=not self.cfg.progress,
            unit="step",
            dynamic_ncols=True,
        )

    def run(self) -> TrainResult:
        cfg, s = self.cfg, self.state
        total = int(cfg.total_steps)
        bar = self.progress_bar()
        log.info("%s on %s: %d env steps from %d", cfg.agent.name, cfg.env.id, total, s.env_step)
        window_start, window_steps, finished, stats = time.perf_counter(), s.env_step, [], {}
        while s.env_step < total:
            actions = self.act()
            finished += self.step(actions)
            stats.update(self.learn())  # the newest value of each stat (critic and actor)
            bar.update(self.envs.num_envs)
            if bar.n >= bar.total and s.env_step < total:
                bar.close()
                bar = self.progress_bar()
            if s.env_step >= s.next_eval or s.env_step >= total:
                every = int(cfg.eval_every)
                s.next_eval += every * max(math.ceil((s.env_step - s.next_eval + 1) / every), 0)
                result = self.evaluate_and_checkpoint()
                bar.set_postfix(eval_return=f"{result.return_mean:.1f}", refresh=False)
            if s.env_step - window_steps >= int(cfg.log_every):
                sps = (s.env_step - window_steps) / (time.perf_counter() - window_start)
                self.log_train(stats, finished, sps)
                bar.set_postfix(sps=f"{sps:.0f}", eval_return=self.eval_text(), refresh=False)
                window_start, window_steps, finished = time.perf_counter(), s.env_step, []
        bar.close()
        self.logger.close()
        plot = self.plot() if cfg.plot else None
        assert self.last_eval is not None and self.last_checkpoint is not None
        return TrainResult(
            self.run_dir, s.env_step, self.agent.updates, self.last_eval, self.last_checkpoint, plot
        )

    def eval_text(self) -> str:
        return f"{self.last_eval.return_mean:.1f}" if self.last_eval is not None else "-"

    def log_train(self, stats: dict[str, torch.Tensor], finished: list[float], sps: float) -> None:
        metrics = {f"train/{k}": float(v) for k, v in stats.items()}
        metrics["train/env_steps_per_s"] = sps
        metrics["train/grad_updates"] = float(self.agent.updates)
        if finished:
            metrics["train/episode_return"] = float(np.mean(finished))
        for name, ms in self.agent.timer.mean_ms().items():
            metrics[f"time/{name}_ms"] = ms
        self.agent.timer.reset()
        self.logger.log(metrics, self.state.env_step, self.agent.updates)
        log.info(
            "env step %d: %.1f env steps/s, %d gradient updates, train return %s",
            self.state.env_step,
            sps,
            self.agent.updates,
            f"{np.mean(finished):.1f}" if finished else "-",
        )

    def plot(self) -> Path:
        objective = getattr(self.agent.actor, "objective", None)
        label = self.cfg.agent.name + (f", {objective.weight}" if objective is not None else "")
        curves = {
            f"{label}: {rule}": read_eval_curve(self.logger.csv_path, prefix)
            for prefix, rule in (("eval", "eval rule"), ("eval_raw", "one sample"))
        }
        title = f"{self.cfg.env.id}: {self.cfg.agent.name}, seed {self.cfg.seed}"
        return plot_learning_curves(curves, self.run_dir / "learning_curve.png", title)

    def close(self) -> None:
        self.envs.close()
        self.eval_envs.close()


def train(cfg: DictConfig, run_dir: Path) -> TrainResult:
    """Train (or resume) one run into ``run_dir``."""
    trainer = Trainer(cfg, run_dir)
    try:
        return trainer.run()
    finally:
        trainer.close()


@hydra_main("control_train")
def main(cfg: DictConfig) -> float:
    """``python -m control.train``: see the module docstring."""
    result = train(cfg, run_directory())
    print(
        f"env steps {result.env_step}, gradient updates {result.grad_updates}, "
        f"eval return {result.last_eval.return_mean:.1f} ± {result.last_eval.return_std:.1f}; "
        f"checkpoint {result.checkpoint}"
    )
    return result.last_eval.return_mean


if __name__ == "__main__":
    main()
