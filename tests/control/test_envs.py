"""Env construction, action rescaling, seeding and exact snapshots."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from control.envs import (
    ActionScaler,
    env_config_names,
    make_vector_env,
    restore_vector_env,
    snapshot_vector_env,
)
from gempo.errors import GempoError
from gempo.runs import check_group_choices, compose_config

MUJOCO_TASKS = ["halfcheetah", "hopper", "walker2d", "ant", "humanoid", "swimmer"]


def test_every_env_config_builds_a_continuous_vector_env():
    assert set(MUJOCO_TASKS) <= set(env_config_names())
    for name in env_config_names():
        cfg = compose_config("control_train", [f"env={name}"])
        envs = make_vector_env(cfg.env.id, 2)
        obs, _ = envs.reset(seed=0)
        assert obs.shape == (2, envs.single_observation_space.shape[0])
        assert cfg.env.id.endswith("-v5") or name == "pendulum"
        envs.close()


def test_bad_envs_are_one_line_errors():
    with pytest.raises(GempoError, match="not a registered gymnasium env"):
        make_vector_env("NoSuchEnv-v5", 1)
    with pytest.raises(GempoError, match="is not continuous"):
        make_vector_env("CartPole-v1", 1)
    with pytest.raises(
        GempoError, match="env=nope: unknown env config; expected one of .*walker2d"
    ):
        check_group_choices(["seed=1", "env=walker2d,nope"])
    check_group_choices(["env=walker2d,hopper", "env.num_envs=2"])


def test_action_scaler_maps_the_unit_box_onto_the_env_bounds():
    scaler = ActionScaler(np.array([-3.0, 0.0]), np.array([3.0, 1.0]))
    np.testing.assert_allclose(
        scaler.to_env(np.array([[-1.0, -1.0], [1.0, 1.0], [0.0, 0.0]])), [[-3, 0], [3, 1], [0, 0.5]]
    )
    np.testing.assert_allclose(scaler.to_env(np.array([5.0, -5.0])), [3, 0])  # clipped


def _rollout(envs: gym.vector.VectorEnv, steps: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(steps):
        obs, *_ = envs.step(
            rng.uniform(-1, 1, size=(envs.num_envs, *envs.single_action_space.shape))
        )
        out.append(obs)
    return np.stack(out)


@pytest.mark.parametrize("env_id", ["Hopper-v5", "InvertedPendulum-v5", "Pendulum-v1"])
def test_seeded_resets_and_snapshots_reproduce_rollouts_exactly(env_id):
    first, second = make_vector_env(env_id, 2), make_vector_env(env_id, 2)
    np.testing.assert_array_equal(first.reset(seed=3)[0], second.reset(seed=3)[0])
    _rollout(first, 37, seed=0)  # crosses episode ends (same-step autoreset)
    snapshot = snapshot_vector_env(first)
    expected = _rollout(first, 60, seed=1)
    restore_vector_env(second, snapshot)
    np.testing.assert_array_equal(_rollout(second, 60, seed=1), expected)
    with pytest.raises(GempoError, match="num_envs"):
        restore_vector_env(make_vector_env(env_id, 1), snapshot)
