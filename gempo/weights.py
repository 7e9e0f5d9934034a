"""Group normalization of rewards and the monotone weight functions ``g`` of GeMPO.

A GeMPO step scores a group of ``N`` samples per context, normalizes the rewards within the
group into advantages ``A`` and weights each sample by ``w = g(A)``. The virtual target
measure is ``mu*(dx) ∝ pi_old(dx) g(A(x))``; ``g`` is any monotone non-decreasing function.
Signed functions (``linear``, ``advantage``, ``tanh`` without offset, centered ``rank``) put
negative mass on poor samples, which the reweighted loss turns into repulsion.

All functions map advantages ``(groups, group_size)`` to weights of the same shape.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Literal

import torch
from torch import Tensor, nn

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


def check_finite_rewards(rewards: Tensor) -> Tensor:
    """``rewards`` unchanged, or a :class:`GempoError` naming how many are nan/inf. It reads a
    number back from the device, so it belongs where rewards are produced (an oracle's score),
    not inside an update that must not wait for the GPU."""
    bad = int((~torch.isfinite(rewards)).sum())
    if bad:
        raise GempoError(
            f"reward returned {bad} non-finite value(s) (nan/inf) in a batch of shape "
            f"{tuple(rewards.shape)}; the reward model must return finite numbers"
        )
    return rewards


def normalize_rewards(rewards: Tensor, mode: Normalization = "zscore", eps: float = 1e-6) -> Tensor:
    """Advantages from rewards, within each group.

    ``rewards``: ``(groups, group_size)``. ``none`` keeps them; ``center`` subtracts the group
    mean; ``zscore`` also divides by the group standard deviation (a group whose rewards are all
    equal gets zero advantages); ``rank`` gives centered ranks in ``[-1, 1]``.
    Raises :class:`GempoError` on a z-score of a group of one. Reads nothing back from the
    device (see :func:`check_finite_rewards` for the rewards' own check).
    """
    if rewards.dim() != 2:
        raise GempoError(
            f"rewards must have shape (groups, group_size), got {tuple(rewards.shape)}"
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


def _normaliser_from_sorted(values: Tensor, candidates: Tensor, below: Tensor) -> Tensor:
    """Pick the exact normaliser among ``candidates`` ``(groups, N)``: entry ``k`` is the
    normaliser that holds if exactly the ``k + 1`` largest of ``values`` (sorted descending,
    ``(groups, N)``) are above the floor; ``below(values, m)`` says "at or below the floor".

    The supports whose own smallest value stays above the floor form a prefix ``1 .. k*`` (as
    in sparsemax), so the size of the support is their count: one comparison per entry, which
    stays consistent when a value sits at the floor up to rounding. ``(groups, 1)``."""
    above = ~below(values, candidates) & torch.isfinite(candidates)
    k = above.sum(-1, keepdim=True).clamp_min(1)
    return candidates.gather(-1, k - 1)


class SimplexWeight(WeightFunction, nn.Module):
    """Per-group weights solved on the simplex, the reference update's form: for rewards ``q``
    of a group, ``w_i = phi((q_i - nu) / tau)`` with the normaliser ``nu`` chosen exactly so
    that ``sum_i w_i = 1``; returned times ``N`` (mean weight 1, like the other functions).

    Meant for raw rewards (``normalization=none``): ``tau`` carries the reward's scale. With
    ``target_kl`` set, ``tau`` is learned (as ``log tau``, so it stays positive) by
    :meth:`temperature_loss`, which holds ``KL(w || uniform)`` at ``target_kl`` nats: the
    weights are as greedy as that, whatever the scale of ``q``. ``tau`` is a parameter of this
    module, so it travels in the state dict of whatever owns the weight function.

    ``kl_group_size``: the group size ``target_kl`` is given for. Other group sizes hold the
    same share of the largest possible KL, ``log N``: the target becomes
    ``target_kl * log N / log kl_group_size`` (``None``: ``target_kl`` as it is, for any ``N``).
    """

    def __init__(
        self,
        tau: float = 1.0,
        target_kl: float | None = None,
        kl_group_size: int | None = None,
    ) -> None:
        nn.Module.__init__(self)
        tau = _positive("tau", tau)
        if target_kl is not None and not target_kl > 0:
            raise GempoError(f"weight.target_kl must be > 0 or null, got {target_kl}")
        if kl_group_size is not None and not (
            int(kl_group_size) == kl_group_size and kl_group_size >= 2
        ):
            raise GempoError(f"weight.kl_group_size must be an integer >= 2, got {kl_group_size}")
        self.target_kl = None if target_kl is None else float(target_kl)
        self.kl_group_size = None if kl_group_size is None else int(kl_group_size)
        self.log_tau = nn.Parameter(
            torch.tensor(math.log(tau)), requires_grad=self.target_kl is not None
        )

    @property
    def tau(self) -> Tensor:
        """The current temperature (a scalar tensor, no gradient)."""
        return self.log_tau.detach().exp()

    @abstractmethod
    def simplex(self, z: Tensor) -> Tensor:
        """``(groups, N)`` scaled rewards ``q / tau`` -> weights summing to 1 per group."""

    def __call__(self, advantages: Tensor) -> Tensor:
        z = advantages / self.tau.to(advantages.dtype)
        # the weights do not change with a shift of z; from the maximum, the cumulative sums of
        # the normalisers stay small enough for float32 whatever the reward's scale
        z = z - z.amax(-1, keepdim=True)
        return advantages.shape[-1] * self.simplex(z)

    def kl_from_uniform(self, weights: Tensor) -> Tensor:
        """``KL(p || uniform)`` per group ``(groups,)``, ``p`` the weights' positive part
        normalised to sum 1 (a floor below zero puts negative mass outside ``p``)."""
        p = weights.detach().clamp_min(0.0)
        p = p / p.sum(-1, keepdim=True).clamp_min(1e-12)
        entropy = -torch.xlogy(p, p).sum(-1)
        return math.log(weights.shape[-1]) - entropy

    def kl_target(self, group_size: int) -> float:
        """The KL target for groups of ``group_size``; a :class:`GempoError` when no weights
        on ``group_size`` samples can reach it (the KL from uniform is below ``log N``)."""
        assert self.target_kl is not None
        target = self.target_kl
        if self.kl_group_size is not None:
            target *= math.log(group_size) / math.log(self.kl_group_size)
        if not target < math.log(group_size):
            raise GempoError(
                f"weight.target_kl={self.target_kl} cannot be held with groups of {group_size} "
                f"samples: the KL from uniform is below log N = {math.log(group_size):.3f}"
            )
        return target

    def check_group_size(self, group_size: int) -> None:
        """A :class:`GempoError` now, rather than at the first update, when the KL target
        cannot be held with groups of ``group_size``."""
        if self.target_kl is not None:
            self.kl_target(group_size)

    def temperature_loss(self, weights: Tensor) -> Tensor:
        """``tau * (target - KL(w || uniform))`` averaged over groups (0 when ``tau`` is
        fixed): descending it raises ``tau`` while the weights are greedier than the target."""
        if self.target_kl is None:
            return torch.zeros((), device=weights.device)
        gap = self.kl_target(weights.shape[-1]) - self.kl_from_uniform(weights).mean()
        return self.log_tau.exp() * gap

    def __repr__(self) -> str:
        target = "fixed" if self.target_kl is None else f"target_kl={self.target_kl}"
        return f"{type(self).__name__}(tau={float(self.tau):.3g}, {target})"


class SimplexExpWeight(SimplexWeight):
    """``w = exp((q - nu) / tau)``, ``nu = tau * logsumexp(q / tau)``: the softmax."""

    def simplex(self, z: Tensor) -> Tensor:
        return torch.softmax(z, dim=-1)


class SimplexLinearWeight(SimplexWeight):
    """``w = max((q - nu) / tau, bound / N)``: the Euclidean projection of ``q / tau`` onto the
    simplex with the floor ``bound / N`` (``nu`` exact, by sorting and cumulative sums). With
    ``bound = 0`` poor samples get zero weight; ``bound < 0`` gives them negative weight, the
    repulsion of a signed target measure. ``bound < 1`` is needed for the floor to fit."""

    def __init__(
        self,
        tau: float = 1.0,
        target_kl: float | None = None,
        kl_group_size: int | None = None,
        bound: float = 0.0,
    ) -> None:
        super().__init__(tau, target_kl, kl_group_size)
        if not bound < 1:
            raise GempoError(f"weight.bound must be < 1, got {bound}")
        self.bound = float(bound)
        self.signed = self.bound < 0

    def simplex(self, z: Tensor) -> Tensor:
        n = z.shape[-1]
        floor = self.bound / n
        values = z.sort(dim=-1, descending=True).values
        k = torch.arange(1, n + 1, device=z.device, dtype=z.dtype)
        # with the top k above the floor: sum_{i<=k} (z_i - m) + (n - k) floor = 1
        candidates = (values.cumsum(-1) + (n - k) * floor - 1.0) / k
        m = _normaliser_from_sorted(values, candidates, lambda v, m: v - m <= floor)
        return torch.clamp(z - m, min=floor)

    def __repr__(self) -> str:
        return super().__repr__()[:-1] + f", bound={self.bound})"


class SimplexSquareWeight(SimplexWeight):
    """``w = max((q - nu) / tau, 0)^2`` with ``nu`` exact so that the weights sum to 1."""

    def simplex(self, z: Tensor) -> Tensor:
        n = z.shape[-1]
        values = z.sort(dim=-1, descending=True).values
        k = torch.arange(1, n + 1, device=z.device, dtype=z.dtype)
        s, q = values.cumsum(-1), values.pow(2).cumsum(-1)
        # with the top k active: sum_{i<=k} (z_i - m)^2 = 1, the root below every active z_i
        disc = s.pow(2) - k * (q - 1.0)
        candidates = torch.where(
            disc >= 0, (s - disc.clamp_min(0).sqrt()) / k, torch.full_like(s, math.nan)
        )
        m = _normaliser_from_sorted(values, candidates, lambda v, m: v <= m)
        return torch.clamp(z - m, min=0.0).pow(2)


WEIGHT_FUNCTIONS: dict[str, type[WeightFunction]] = {
    "exp": ExpWeight,
    "linear": LinearWeight,
    "linear_clip": LinearClipWeight,
    "advantage": AdvantageWeight,
    "tanh": TanhWeight,
    "sigmoid": SigmoidWeight,
    "rank": RankWeight,
    "topk": TopKWeight,
    "simplex_exp": SimplexExpWeight,
    "simplex_linear": SimplexLinearWeight,
    "simplex_square": SimplexSquareWeight,
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
