"""``compile=...``: the compiled update and action compute what the eager ones do. On the CPU,
where CUDA graphs are not available, ``torch.compile``'s default mode stands in for them;
``GEMPO_TEST_DEVICE=cuda`` runs the same comparison on a GPU."""

from __future__ import annotations

import pytest
import torch
import torch._inductor.config

from control.agent import build_agent
from control.replay import Transitions
from tests.control.conftest import DEVICE


@pytest.fixture
def eager_random():
    """Compiled code draws random numbers as eager code does (inductor has its own RNG)."""
    with torch._inductor.config.patch(fallback_random=True):
        yield


def _run(cfg, compiled: bool) -> tuple[list[dict], list[torch.Tensor], dict]:
    torch.manual_seed(0)
    device = torch.device(DEVICE)
    agent = build_agent(cfg, obs_dim=4, act_dim=2, device=device)
    if compiled:
        agent.compile_hot_paths("reduce-overhead" if device.type == "cuda" else "default")
    data = torch.Generator().manual_seed(1)
    stats, actions = [], []
    for _ in range(4):  # the critic every time, the actor every actor_every
        batch = Transitions(
            *(
                t.to(device)
                for t in (
                    torch.randn(32, 4, generator=data),
                    torch.rand(32, 2, generator=data) * 2 - 1,
                    torch.randn(32, generator=data),
                    torch.randn(32, 4, generator=data),
                    torch.zeros(32),
                )
            )
        )
        stats.append({k: v.item() for k, v in agent.update(batch).items()})
        for mode in ("explore", "eval", "eval_raw"):
            actions.append(agent.act(torch.randn(3, 4, generator=data).to(device), mode).cpu())
    return stats, actions, agent.state_dict()


@pytest.mark.slow
@pytest.mark.parametrize("agent", ["gempo", "sac"])
def test_compiled_updates_and_actions_match_eager(make_cfg, eager_random, agent):
    cfg = make_cfg(agent=agent)
    eager = _run(cfg, compiled=False)
    compiled = _run(cfg, compiled=True)
    for a, b in zip(eager[0], compiled[0], strict=True):
        assert a.keys() == b.keys()
        for key in a:
            assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-5), key
    for a, b in zip(eager[1], compiled[1], strict=True):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)
    for key, value in eager[2].items():
        if torch.is_tensor(value):
            torch.testing.assert_close(compiled[2][key], value, rtol=1e-4, atol=1e-5)
    assert len(eager[0]) == 4 and any("actor/loss" in s for s in eager[0])
