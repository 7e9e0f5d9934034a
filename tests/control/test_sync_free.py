"""An update and an action read nothing back from the device: on a GPU, each such read would
stall the host until the queued kernels finish. On the CPU the guard below makes every
read-back that this project's code calls (``.item()``, ``bool(t)``, ``float(t)``, ``.cpu()``,
...) raise, so the CPU run checks the path a GPU would take."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
import torch
from control_ops import read_back_watch

from control.agent import build_agent
from control.replay import Transitions

PROJECT = tuple(str(Path(__file__).resolve().parents[2] / name) for name in ("gempo", "control"))


class HostSync(AssertionError):
    """A read-back from the device, called from this project's code."""


def no_host_sync() -> contextlib.AbstractContextManager:
    """Make every read-back (``control_ops.READ_BACKS``) from this project's code raise."""

    def stop(where: str) -> None:
        raise HostSync(where)

    return read_back_watch(PROJECT, stop)


def test_the_guard_catches_a_read_back_in_project_code():
    from gempo.weights import check_finite_rewards  # reads the nan count back on purpose

    with no_host_sync(), pytest.raises(HostSync, match="Tensor.__int__ at .*weights"):
        check_finite_rewards(torch.ones(2, 3))


@pytest.mark.parametrize(
    "overrides",
    [
        ["agent=gempo"],  # simplex weights with a learned temperature
        ["agent=gempo", "weight=linear"],  # z-scored signed weights: the negative-mass path
        ["agent=gempo", "weight=simplex_linear", "weight.bound=-0.5"],
        ["agent=gempo", "agent.actor.act_candidates=3", "agent.actor.act_noise=0.1"],
        ["agent=sac"],
    ],
)
def test_update_and_act_never_read_back_from_the_device(make_cfg, overrides):
    cfg = make_cfg(*overrides[1:], agent=overrides[0].split("=")[1])
    agent = build_agent(cfg, obs_dim=4, act_dim=2, device=torch.device("cpu"))
    batch = Transitions(
        torch.randn(32, 4),
        torch.rand(32, 2) * 2 - 1,
        torch.randn(32),
        torch.randn(32, 4),
        torch.zeros(32),
    )
    with no_host_sync():
        for _ in range(3):  # the second update is the actor's with actor_every=2
            stats = agent.update(batch)
        for mode in ("explore", "eval", "eval_raw"):
            agent.act(torch.randn(5, 4), mode)
    assert "actor/loss" in stats or cfg.agent.actor_every > 1
