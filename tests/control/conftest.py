"""Hydra compose helpers and tiny sizes shared by the control tests."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest
import torch
from omegaconf import DictConfig

from gempo.runs import compose_config

DEVICE = os.environ.get("GEMPO_TEST_DEVICE", "cpu")
"""The device of the tests' runs (``benchmarks/gpu_check.sh`` sets ``cuda``)."""

TINY = [
    "env=inverted_pendulum",
    "batch_size=32",
    "learning_starts=100",
    "total_steps=300",
    "eval_every=150",
    "eval_episodes=2",
    "log_every=100",
    "agent.actor_starts=0",
    "critic.hidden=32",
    "agent.actor.hidden=32",
    "agent.actor.depth=2",
    "torch_threads=1",
    f"device={DEVICE}",
    "progress=false",
]
"""A run of a few seconds on a 2-core CPU."""

TINY_GEMPO = [
    "agent.actor.steps=3",
    "agent.actor.proposal_every=40",
    "agent.actor.group_size=4",
    "agent.actor.act_candidates=2",
    "agent.actor.eval_candidates=2",
]


@pytest.fixture(autouse=True)
def _one_thread():
    """Small nets run fastest, and deterministically, on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def make_cfg() -> Callable[..., DictConfig]:
    """Compose ``control_train`` with overrides (tiny GeMPO sizes unless ``tiny=False``)."""

    def _make(*overrides: str, tiny: bool = True, agent: str = "gempo") -> DictConfig:
        base = [*TINY, *(TINY_GEMPO if agent == "gempo" else [])] if tiny else []
        return compose_config("control_train", [f"agent={agent}", *base, *overrides])

    return _make
