"""Group normalization of rewards and the monotone weight functions ``g`` of GeMPO.

A GeMPO step scores a group of ``N`` samples per context, normalizes the rewards within the
group into advantages ``A`` and weights each sample by ``w = g(A)``. The virtual target
measure is ``mu*(dx) ∝ pi_old(dx) g(A(x))``; ``g`` is any monotone non-decreasing function.
Signed functions (``linear``, ``advantage``, ``tanh`` without offset, centered ``rank``) put
negative mass on poor samples, which the reweighted loss turns into repulsion.

All functions map advantages ``(groups, group_size)`` to weights of the same shape.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Literal

import torch
from torch import Tensor

from gempo.errors import GempoError

Normalization = Literal["none", "center", "zscore", "rank"]
NORMALIZATIONS: tuple[str, ...] = ("none", "center", "zscore", "rank")


def centered_ranks(values: Tensor) -> Tensor:
    """Ranks within each row mapped linearly onto ``[-1, 1]``; ties get their average rank.

    ``values``: ``(groups, group_size)``. A row of one element maps to 0.
    """
    n = values.shape[-1]
    if n == 1:
        return torch.zeros_like(values)
    less = (values.unsqueeze(-1) > values.unsqueeze(-2)).sum(-1)
    equal = (values.unsqueeze(-1) == values.unsqueeze(-2)).sum(-1)
    rank = less.to(values.dtype) + 0.5 * (equal.to(values.dtype) - 1.0)  # 0 .. n-1
    return 2.0 * rank / (n - 1) - 1.0


def normalize_rewards(rewards: Tensor, mode: Normalization = "zscore", eps: float = 1e-6) -> Tensor:
    """Advantages from rewards, within each group.

    ``rewards``: ``(groups, group_size)``. ``none`` keeps them; ``center`` subtracts the group
    mean; ``zscore`` also divides by the group standard deviation (a group whose rewards are all
    equal gets zero advantages); ``rank`` gives centered ranks in ``[-1, 1]``.
    Raises :class:`GempoError` on non-finite rewards or a z-score of a group of one.
    """
    if rewards.dim() != 2:
        raise GempoError(
            f"rewards must have shape (groups, group_size), got {tuple(rewards.shape)}"
        )
    bad = (~torch.isfinite(rewards)).sum().item()
    if bad:
        raise GempoError(
            f"reward returned {bad} non-finite value(s) (nan/inf) in a group of shape "
            f"{tuple(rewards.shape)}; the reward model must return finite numbers"
        )
    if mode == "none":
        return rewards
    if mode == "rank":
        return centered_ranks(rewards)
    centered = rewards - rewards.mean(dim=-1, keepdim=True)
    if mode == "center":
        return centered
    if mode == "zscore":
        if rewards.shape[-1] < 2:
            raise GempoError("normalization=zscore needs group_size >= 2, got group_size=1")
        return centered / (rewards.std(dim=-1, keepdim=True) + eps)
    raise GempoError(f"unknown normalization {mode!r}; expected one of {', '.join(NORMALIZATIONS)}")


def _positive(name: str, value: float) -> float:
    if not value > 0:
        raise GempoError(f"weight.{name} must be > 0, got {value}")
    return float(value)


class WeightFunction(ABC):
    """A monotone non-decreasing map from advantages to sample weights.

    ``signed`` says whether the function can return negative weights (negative target mass).
    """

    signed: bool = False

    @abstractmethod
    def __call__(self, advantages: Tensor) -> Tensor:
        """``(groups, group_size)`` advantages -> ``(groups, group_size)`` weights."""

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v}" for k, v in vars(self).items())
        return f"{type(self).__name__}({fields})"


class ExpWeight(WeightFunction):
    """``g(A) = N * softmax(A / tau)`` over the group: the KL-regularized target (softmax
    reweighting). Mean weight 1; over-greedy at small ``tau``."""

    def __init__(self, tau: float = 1.0) -> None:
        self.tau = _positive("tau", tau)

    def __call__(self, advantages: Tensor) -> Tensor:
        return advantages.shape[-1] * torch.softmax(advantages / self.tau, dim=-1)


class LinearWeight(WeightFunction):
    """``g(A) = 1 + beta * A``: the chi-square-type target. With z-scored advantages the mean
    weight is 1; samples below ``-1/beta`` carry negative mass."""

    signed = True

    def __init__(self, beta: float = 1.0) -> None:
        self.beta = _positive("beta", beta)

    def __call__(self, advantages: Tensor) -> Tensor:
        return 1.0 + self.beta * advantages


class LinearClipWeight(WeightFunction):
    """``g(A) = max(0, 1 + beta * A)``: linear without negative mass."""

    def __init__(self, beta: float = 1.0) -> None:
        self.beta = _positive("beta", beta)

    def __call__(self, advantages: Tensor) -> Tensor:
        return torch.clamp(1.0 + self.beta * advantages, min=0.0)


class AdvantageWeight(WeightFunction):
    """``g(A) = beta * A``: pure attraction/repulsion with zero mean for centered advantages."""

    signed = True

    def __init__(self, beta: float = 1.0) -> None:
        self.beta = _positive("beta", beta)

    def __call__(self, advantages: Tensor) -> Tensor:
        return self.beta * advantages


class TanhWeight(WeightFunction):
    """``g(A) = offset + tanh(beta * A)``: bounded. ``offset=1`` is non-negative,
    ``offset=0`` is signed."""

    def __init__(self, beta: float = 1.0, offset: float = 1.0) -> None:
        self.beta = _positive("beta", beta)
        if offset < 0:
            raise GempoError(f"weight.offset must be >= 0, got {offset}")
        self.offset = float(offset)
        self.signed = self.offset < 1.0

    def __call__(self, advantages: Tensor) -> Tensor:
        return self.offset + torch.tanh(self.beta * advantages)


class SigmoidWeight(WeightFunction):
    """``g(A) = 2 * sigmoid(beta * A)``: bounded in ``(0, 2)``, smooth, weight 1 at ``A = 0``."""

    def __init__(self, beta: float = 1.0) -> None:
        self.beta = _positive("beta", beta)

    def __call__(self, advantages: Tensor) -> Tensor:
        return 2.0 * torch.sigmoid(self.beta * advantages)


class RankWeight(WeightFunction):
    """Weights from ranks within the group, invariant to any monotone rescaling of the reward.

    ``offset + scale * r`` with ``r`` the centered rank in ``[-1, 1]``: ``offset=0`` (default)
    is signed with zero mean, ``offset=scale`` is non-negative.
    """

    def __init__(self, scale: float = 1.0, offset: float = 0.0) -> None:
        self.scale = _positive("scale", scale)
        if offset < 0:
            raise GempoError(f"weight.offset must be >= 0, got {offset}")
        self.offset = float(offset)
        self.signed = self.offset < self.scale

    def __call__(self, advantages: Tensor) -> Tensor:
        return self.offset + self.scale * centered_ranks(advantages)


class TopKWeight(WeightFunction):
    """Indicator of the ``k`` best samples of each group, scaled to mean weight 1
    (``N / k`` on the top ``k``, 0 elsewhere): rejection-sampling / best-of-N fine-tuning."""

    def __init__(self, k: int = 1) -> None:
        if int(k) < 1:
            raise GempoError(f"weight.k must be >= 1, got {k}")
        self.k = int(k)

    def __call__(self, advantages: Tensor) -> Tensor:
        n = advantages.shape[-1]
        if self.k > n:
            raise GempoError(f"weight.k={self.k} exceeds the group size {n}")
        top = advantages.topk(self.k, dim=-1).indices
        weights = torch.zeros_like(advantages).scatter_(-1, top, n / self.k)
        return weights


WEIGHT_FUNCTIONS: dict[str, type[WeightFunction]] = {
    "exp": ExpWeight,
    "linear": LinearWeight,
    "linear_clip": LinearClipWeight,
    "advantage": AdvantageWeight,
    "tanh": TanhWeight,
    "sigmoid": SigmoidWeight,
    "rank": RankWeight,
    "topk": TopKWeight,
}


def build_weight(name: str, **kwargs: float) -> WeightFunction:
    """The weight function registered under ``name``, built with ``kwargs``."""
    if name not in WEIGHT_FUNCTIONS:
        raise GempoError(
            f"unknown weight function {name!r}; expected one of {', '.join(WEIGHT_FUNCTIONS)}"
        )
    try:
        return WEIGHT_FUNCTIONS[name](**kwargs)
    except TypeError as err:
        raise GempoError(f"weight {name!r}: {err}") from None
