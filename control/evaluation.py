"""Deterministically seeded evaluation episodes on an env separate from the training env."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from gymnasium.vector import SyncVectorEnv

from control.actors import ActMode
from control.agent import ActorCritic
from control.envs import ActionScaler, as_tensor


@dataclass
class EvalResult:
    """Per-episode ``returns`` and ``lengths`` ``(episodes,)``."""

    returns: np.ndarray
    lengths: np.ndarray

    @property
    def return_mean(self) -> float:
        return float(self.returns.mean())

    @property
    def return_std(self) -> float:
        return float(self.returns.std())

    def metrics(self, prefix: str = "eval") -> dict[str, float]:
        return {
            f"{prefix}/return_mean": self.return_mean,
            f"{prefix}/return_std": self.return_std,
            f"{prefix}/episode_length": float(self.lengths.mean()),
        }


def evaluate(
    agent: ActorCritic,
    envs: SyncVectorEnv,
    scaler: ActionScaler,
    seed: int,
    device: torch.device,
    mode: ActMode = "eval",
) -> EvalResult:
    """Run one episode in each of the ``envs`` (one per evaluation episode, stepped as a batch)
    acting under ``mode`` (``eval``: the evaluation rule; ``eval_raw``: one policy sample);
    sub-env ``i`` is reset with seed ``seed + i``.

    The policy's own randomness is drawn from a forked generator seeded with ``seed``, so an
    evaluation neither depends on nor disturbs the training random stream.
    """
    num = envs.num_envs
    returns, lengths = np.zeros(num), np.zeros(num, dtype=np.int64)
    running = np.ones(num, dtype=bool)
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        obs, _ = envs.reset(seed=seed)
        while running.any():
            actions = agent.act(as_tensor(obs, device), mode).cpu().numpy()
            obs, rewards, terminated, truncated, _ = envs.step(scaler.to_env(actions))
            returns += rewards * running
            lengths += running
            running &= ~(terminated | truncated)
    return EvalResult(returns=returns, lengths=lengths)
