"""Gymnasium environments: checked construction, vectorized and seeded, the action rescaling
between the policy's ``[-1, 1]`` box and the env's bounds, and snapshots of the simulator state
so that a resumed run continues exactly."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import mujoco
import numpy as np
import torch
from gymnasium.envs.mujoco.mujoco_env import MujocoEnv
from gymnasium.vector import AutoresetMode, SyncVectorEnv
from gymnasium.wrappers import TimeLimit
from torch import Tensor

from gempo.errors import GempoError

ENV_CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs" / "env"


def env_config_names() -> list[str]:
    """Names of the ``env`` config group (``configs/env/*.yaml``)."""
    return sorted(p.stem for p in ENV_CONFIG_DIR.glob("*.yaml"))


@dataclass(frozen=True)
class EnvSpaces:
    """What the agent needs to know about an env: observation and action sizes and the
    action bounds ``low``/``high`` ``(act_dim,)``."""

    obs_dim: int
    act_dim: int
    low: np.ndarray
    high: np.ndarray


def check_spaces(env_id: str, observation_space: gym.Space, action_space: gym.Space) -> EnvSpaces:
    """The env's sizes, or a :class:`GempoError` when it is not a continuous-control task."""
    if not isinstance(action_space, gym.spaces.Box):
        raise GempoError(
            f"env.id={env_id}: action space {action_space} is not continuous; "
            "expected a gymnasium.spaces.Box"
        )
    if not (np.all(np.isfinite(action_space.low)) and np.all(np.isfinite(action_space.high))):
        raise GempoError(f"env.id={env_id}: action bounds must be finite, got {action_space}")
    if not isinstance(observation_space, gym.spaces.Box) or len(observation_space.shape) != 1:
        raise GempoError(
            f"env.id={env_id}: observation space {observation_space} is not a flat Box vector"
        )
    return EnvSpaces(
        obs_dim=int(observation_space.shape[0]),
        act_dim=int(np.prod(action_space.shape)),
        low=action_space.low.astype(np.float32).reshape(-1),
        high=action_space.high.astype(np.float32).reshape(-1),
    )


def make_vector_env(env_id: str, num_envs: int, kwargs: dict | None = None) -> SyncVectorEnv:
    """``num_envs`` copies of ``env_id`` stepped in this process.

    Autoreset is same-step: when an episode ends, ``step`` returns the first observation of the
    next episode and puts the last one in ``info["final_obs"]``, so every step is a transition.
    Raises :class:`GempoError` for an unknown id or a non-continuous task.
    """
    if num_envs < 1:
        raise GempoError(f"env.num_envs must be >= 1, got {num_envs}")
    try:
        gym.spec(env_id)
    except gym.error.Error as err:
        raise GempoError(f"env.id={env_id}: not a registered gymnasium env ({err})") from None
    envs = gym.make_vec(
        env_id,
        num_envs=num_envs,
        vectorization_mode="sync",
        vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP},
        **(kwargs or {}),
    )
    try:
        check_spaces(env_id, envs.single_observation_space, envs.single_action_space)
    except GempoError:
        envs.close()
        raise
    return envs


class ActionScaler:
    """Maps policy actions in ``[-1, 1]^act_dim`` to the env's box ``[low, high]`` (affine)."""

    def __init__(self, low: np.ndarray, high: np.ndarray) -> None:
        self.low = low.astype(np.float32)
        self.high = high.astype(np.float32)

    def to_env(self, action: np.ndarray) -> np.ndarray:
        """``(..., act_dim)`` in ``[-1, 1]`` -> env units."""
        return self.low + 0.5 * (np.clip(action, -1.0, 1.0) + 1.0) * (self.high - self.low)


def _time_limit(env: gym.Env) -> TimeLimit | None:
    while isinstance(env, gym.Wrapper):
        if isinstance(env, TimeLimit):
            return env
        env = env.env
    return None


def snapshot_env(env: gym.Env) -> dict:
    """The state one env needs to continue exactly: simulator integration state, the env's
    random generator and the time-limit counter. Tensors and plain Python values only, so it
    loads with ``torch.load(weights_only=True)``."""
    base = env.unwrapped
    snapshot: dict = {"np_random": base.np_random.bit_generator.state}
    limit = _time_limit(env)
    snapshot["elapsed_steps"] = limit._elapsed_steps if limit is not None else None
    if isinstance(base, MujocoEnv):
        spec = mujoco.mjtState.mjSTATE_INTEGRATION
        state = np.empty(mujoco.mj_stateSize(base.model, spec), dtype=np.float64)
        mujoco.mj_getState(base.model, base.data, state, spec)
        snapshot["mujoco_state"] = torch.from_numpy(state)
    elif hasattr(base, "state"):  # classic control (Pendulum)
        snapshot["state"] = torch.as_tensor(np.asarray(base.state, dtype=np.float64))
    else:
        raise GempoError(f"env {base}: no way to snapshot its state for an exact resume")
    return snapshot


def restore_env(env: gym.Env, snapshot: dict) -> None:
    """Put an env (already reset once) back into the state of :func:`snapshot_env`."""
    base = env.unwrapped
    base.np_random.bit_generator.state = snapshot["np_random"]
    limit = _time_limit(env)
    if limit is not None:
        limit._elapsed_steps = snapshot["elapsed_steps"]
    if "mujoco_state" in snapshot:
        state = snapshot["mujoco_state"].numpy()
        # the integration state includes the warm start, so the next mj_step is bitwise the same
        mujoco.mj_setState(base.model, base.data, state, mujoco.mjtState.mjSTATE_INTEGRATION)
    else:
        base.state = snapshot["state"].numpy().copy()


def snapshot_vector_env(envs: SyncVectorEnv) -> list[dict]:
    """:func:`snapshot_env` of every sub-env."""
    return [snapshot_env(env) for env in envs.envs]


def restore_vector_env(envs: SyncVectorEnv, snapshots: list[dict]) -> None:
    """:func:`restore_env` of every sub-env; the counts must match."""
    if len(snapshots) != len(envs.envs):
        raise GempoError(
            f"checkpoint holds {len(snapshots)} env states but env.num_envs={len(envs.envs)}; "
            "resume with the num_envs of the checkpointed run"
        )
    for env, snapshot in zip(envs.envs, snapshots, strict=True):
        restore_env(env, snapshot)


def as_tensor(array: np.ndarray, device: torch.device) -> Tensor:
    """A float32 tensor on ``device``; to a GPU through pinned memory, without blocking the
    host (the copy is ordered before the kernels that read it)."""
    tensor = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    if device.type != "cuda":
        return tensor
    return tensor.pin_memory().to(device, non_blocking=True)
