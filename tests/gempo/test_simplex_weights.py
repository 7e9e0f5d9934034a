"""The reference update's per-state simplex weights and their learned temperature."""

import math

import pytest
import torch

from gempo.errors import GempoError
from gempo.weights import (
    SimplexExpWeight,
    SimplexLinearWeight,
    SimplexSquareWeight,
    SimplexWeight,
)

FAMILIES = {
    "linear": (lambda: SimplexLinearWeight(tau=0.7), lambda d, n: d.clamp(min=0.0)),
    "linear_negative": (
        lambda: SimplexLinearWeight(tau=0.7, bound=-0.5),
        lambda d, n: d.clamp(min=-0.5 / n),
    ),
    "square": (lambda: SimplexSquareWeight(tau=0.7), lambda d, n: d.clamp(min=0.0).pow(2)),
}


def bisection(z: torch.Tensor, phi, iterations: int = 200) -> torch.Tensor:
    """``phi(z - m)`` with ``m`` found by bisection so that each row sums to 1."""
    n = z.shape[-1]
    low = z.min(-1, keepdim=True).values - 10.0
    high = z.max(-1, keepdim=True).values + 10.0
    for _ in range(iterations):
        mid = (low + high) / 2
        over = phi(z - mid, n).sum(-1, keepdim=True) > 1
        low, high = torch.where(over, mid, low), torch.where(over, high, mid)
    return phi(z - (low + high) / 2, n)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_simplex_normaliser_is_exact(family):
    make, phi = FAMILIES[family]
    weight = make()
    torch.manual_seed(0)
    q = torch.randn(300, 16, dtype=torch.float64) * torch.rand(300, 1, dtype=torch.float64) * 4
    q[:5, 8:] = q[:5, :8]  # ties
    w = weight(q) / q.shape[-1]
    torch.testing.assert_close(w.sum(-1), torch.ones(300, dtype=torch.float64))
    torch.testing.assert_close(w, bisection(q / weight.tau.double(), phi), atol=1e-10, rtol=0)
    floor = getattr(weight, "bound", 0.0) / q.shape[-1]
    assert (w >= floor - 1e-12).all()
    order = q.argsort(-1)
    assert (w.gather(-1, order).diff(dim=-1) >= -1e-12).all(), "not monotone in q"


def test_negative_bound_gives_the_poor_samples_negative_weight():
    q = torch.tensor([[3.0, 2.0, 0.0, -1.0]])
    w = SimplexLinearWeight(bound=-1.0)(q)
    torch.testing.assert_close(w[0, 2:], torch.tensor([-1.0, -1.0]))  # the floor bound / N, x N
    torch.testing.assert_close(w.sum(), torch.tensor(4.0))
    assert SimplexLinearWeight(bound=-1.0).signed and not SimplexLinearWeight().signed


def test_simplex_exp_is_the_softmax():
    q = torch.randn(3, 10)
    torch.testing.assert_close(SimplexExpWeight(tau=0.5)(q), 10 * torch.softmax(q / 0.5, -1))


@pytest.mark.parametrize("make", [SimplexExpWeight, SimplexLinearWeight, SimplexSquareWeight])
@pytest.mark.parametrize("start_tau", [0.01, 100.0])
def test_the_learned_temperature_moves_the_weights_kl_to_its_target(make, start_tau):
    torch.manual_seed(0)
    weight: SimplexWeight = make(tau=start_tau, target_kl=1.0)
    optimizer = torch.optim.Adam(weight.parameters(), lr=0.05)
    q = torch.randn(64, 16) * 3.0

    def gap() -> float:
        return abs(weight.kl_from_uniform(weight(q)).mean().item() - 1.0)

    before = gap()
    for _ in range(1000):
        optimizer.zero_grad()
        weight.temperature_loss(weight(q)).backward()
        optimizer.step()
    assert before > 0.4 and gap() < 0.05, (before, gap(), float(weight.tau))


def test_kl_target_scales_with_the_group_size_and_must_be_reachable():
    weight = SimplexExpWeight(target_kl=2.0, kl_group_size=64)
    assert weight.kl_target(64) == pytest.approx(2.0)
    assert weight.kl_target(8) == pytest.approx(2.0 * math.log(8) / math.log(64))
    with pytest.raises(GempoError, match="cannot be held with groups of 8"):
        SimplexExpWeight(target_kl=2.5).temperature_loss(torch.ones(2, 8))
    with pytest.raises(GempoError, match="weight.bound must be < 1"):
        SimplexLinearWeight(bound=1.0)
    with pytest.raises(GempoError, match="weight.target_kl must be > 0"):
        SimplexExpWeight(target_kl=0.0)


def test_fixed_temperature_has_no_gradient_and_no_loss():
    weight = SimplexLinearWeight(tau=2.0)
    assert not weight.log_tau.requires_grad
    assert weight.temperature_loss(weight(torch.randn(2, 4))).item() == 0.0


@pytest.mark.parametrize("make", [SimplexLinearWeight, SimplexSquareWeight])
def test_float32_weights_stay_exact_at_any_reward_scale_and_at_the_floor(make):
    """Raw critic values are large (hundreds), and discretised rewards put samples exactly at
    the floor: the float32 weights must still sum to 1 and match the float64 ones."""
    torch.manual_seed(0)
    weight = make(tau=1.0)
    ties = torch.randint(0, 50, (4000, 16)).double() / 37
    large = torch.randn(4000, 64, dtype=torch.float64) * 2 + 300.0
    for q in (ties, large, large * 30):
        q32 = q.float()
        w32 = weight(q32) / q.shape[-1]
        w64 = weight(q32.double()) / q.shape[-1]  # the same (float32-rounded) rewards
        torch.testing.assert_close(w32.sum(-1), torch.ones(len(q)), atol=1e-4, rtol=0)
        torch.testing.assert_close(w32.double(), w64, atol=1e-4, rtol=0)
