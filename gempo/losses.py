"""The reweighted flow-matching loss and the GeMPO objective built on it.

``L(theta) = mean_i w_i * l_FM(theta; x_i)``: with every ``w_i = 1`` this is plain flow
matching on the behaviour samples; a positive weight pulls the flow toward ``x_i``, a
negative one pushes it away. Negative mass is stabilised here, once, for every pipeline.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import torch
from einops import rearrange
from torch import Tensor, nn

from gempo.errors import GempoError
from gempo.policies import GenerativePolicy
from gempo.weights import Normalization, SimplexWeight, WeightFunction, normalize_rewards


class ReweightedLoss(nn.Module):
    """``mean_i w_i * l_i`` with two stabilisers for negative weights.

    - ``negative_loss_clip = c``: the loss of a negatively weighted sample is capped at ``c``
      times the (detached) mean loss of the non-negatively weighted samples, so repulsion
      stops once a poor sample has become ``c`` times less likely than typical ones (the
      unbounded ``-l_i`` would otherwise diverge).
    - ``max_negative_mass = kappa``: negative weights are scaled down so that their total
      magnitude is at most ``kappa`` times the positive total; with ``kappa < 1`` the target
      measure keeps a positive total mass.

    Both leave non-negative weights untouched, so uniform weights give exactly the plain loss.
    """

    def __init__(
        self, negative_loss_clip: float | None = 2.0, max_negative_mass: float | None = 0.5
    ) -> None:
        super().__init__()
        if negative_loss_clip is not None and negative_loss_clip <= 0:
            raise GempoError(
                f"loss.negative_loss_clip must be > 0 or null, got {negative_loss_clip}"
            )
        if max_negative_mass is not None and max_negative_mass < 0:
            raise GempoError(
                f"loss.max_negative_mass must be >= 0 or null, got {max_negative_mass}"
            )
        self.negative_loss_clip = negative_loss_clip
        self.max_negative_mass = max_negative_mass

    def stabilized_weights(self, weights: Tensor) -> Tensor:
        """Weights ``(batch,)`` with negative mass capped (see the class docstring)."""
        weights = weights.detach()
        if self.max_negative_mass is None:
            return weights
        negative_mass = -weights.clamp(max=0.0).sum()
        positive_mass = weights.clamp(min=0.0).sum()
        # without negative weights the scale is unused; the floor only avoids 0 / 0
        scale = torch.clamp(
            self.max_negative_mass * positive_mass / negative_mass.clamp_min(1e-30), max=1.0
        )
        return torch.where(weights < 0, weights * scale, weights)

    def forward(self, per_sample_loss: Tensor, weights: Tensor) -> Tensor:
        """``per_sample_loss``, ``weights``: ``(batch,)``. Returns the scalar loss."""
        weights = self.stabilized_weights(weights)
        negative = weights < 0
        if self.negative_loss_clip is not None:  # no effect without negative weights
            count = (~negative).sum()
            typical = torch.where(  # the non-negative samples' mean loss, else everyone's
                count > 0,
                torch.where(negative, 0.0, per_sample_loss).sum() / count.clamp_min(1),
                per_sample_loss.mean(),
            )
            bound = self.negative_loss_clip * typical.detach()
            per_sample_loss = torch.where(
                negative, torch.minimum(per_sample_loss, bound), per_sample_loss
            )
        return (weights * per_sample_loss).mean()


@dataclass
class GeMPOStep:
    """What one GeMPO update computed. ``advantages``/``weights``: ``(groups, group_size)``;
    ``stats``: detached scalar tensors for logging (on the policy's device: reading them is
    left to the logger, so an update never waits for the GPU)."""

    loss: Tensor
    advantages: Tensor
    weights: Tensor
    stats: dict[str, Tensor] = field(default_factory=dict)


class GeMPOObjective(nn.Module):
    """Normalize rewards per group, weight them with ``g``, and take the reweighted
    flow-matching loss (+ ``reg_alpha`` times the divergence from a reference policy,
    + ``data_alpha`` times the plain flow-matching loss of replayed data samples).

    ``loss_times``: path times per sample in the loss (their mean is each sample's loss); more
    of them lower the variance that the weights multiply, at proportional compute.
    ``reward_cap``: rewards above it are weighted as if equal to it, so the target measure
    prefers no sample over another once both reach the cap (``g(min(R, cap))`` is still
    monotone). It keeps a reward model from being pushed past where it can be trusted;
    ``None`` (default) keeps the rewards as they are. The logged reward stats stay uncapped.
    ``normalization="auto"``: ``none`` for a :class:`~gempo.weights.SimplexWeight` (its
    temperature carries the reward's scale), ``zscore`` for the other weight functions.
    A :class:`~gempo.weights.SimplexWeight` with a KL target adds its temperature loss (whose
    gradient reaches only its ``log tau``), so one backward pass serves the policy and ``tau``;
    the owner's optimizers must cover :meth:`temperature_parameters`.
    ``data_alpha``: weight of the data anchor, the unweighted loss on samples of the data the
    policy was pretrained on (passed to :meth:`forward` as ``data``). It makes the target
    ``mu* + data_alpha * p_data``: the behaviour samples' own errors (which training on them
    would compound) are pulled back toward the data at every step.
    ``temperature_lr``: learning rate of the learned temperature's own parameter group in the
    owner's optimizer."""

    def __init__(
        self,
        weight: WeightFunction,
        normalization: Normalization | Literal["auto"] = "zscore",
        loss: ReweightedLoss | None = None,
        reg_alpha: float = 0.0,
        loss_times: int = 1,
        reward_cap: float | None = None,
        data_alpha: float = 0.0,
        temperature_lr: float = 3e-4,
    ) -> None:
        super().__init__()
        if not temperature_lr > 0:
            raise GempoError(f"objective.temperature_lr must be > 0, got {temperature_lr}")
        self.temperature_lr = float(temperature_lr)
        if reg_alpha < 0:
            raise GempoError(f"reg.alpha must be >= 0, got {reg_alpha}")
        if data_alpha < 0:
            raise GempoError(f"reg.data must be >= 0, got {data_alpha}")
        self.data_alpha = data_alpha
        if loss_times < 1:
            raise GempoError(f"loss_times must be >= 1, got {loss_times}")
        self.loss_times = loss_times
        if reward_cap is not None and not (
            isinstance(reward_cap, int | float)
            and not isinstance(reward_cap, bool)
            and math.isfinite(reward_cap)
        ):
            raise GempoError(f"reward_cap must be a finite number or null, got {reward_cap!r}")
        self.reward_cap = None if reward_cap is None else float(reward_cap)
        self.weight = weight
        if normalization == "auto":
            normalization = "none" if isinstance(weight, SimplexWeight) else "zscore"
        self.normalization = normalization
        self.loss = loss if loss is not None else ReweightedLoss()
        self.reg_alpha = reg_alpha

    def temperature_parameters(self) -> list[nn.Parameter]:
        """The learned temperature of the weight function, if it has one (else empty)."""
        return [p for p in self.parameters() if p.requires_grad]

    def forward(
        self,
        policy: GenerativePolicy,
        x: Tensor,
        cond: Tensor,
        rewards: Tensor,
        reference: GenerativePolicy | None = None,
        data: tuple[Tensor, Tensor] | None = None,
        data_alpha: float | None = None,
    ) -> GeMPOStep:
        """``x``: behaviour samples ``(groups * group_size, ...)`` ordered group by group;
        ``cond``: ``(groups * group_size, cond_dim)``; ``rewards``: ``(groups, group_size)``;
        ``data``: replayed ``(cond (batch, cond_dim), x (batch, ...))`` for the data anchor,
        weighted by ``data_alpha`` (``None``: the configured ``self.data_alpha``; an adaptive
        anchor passes its current weight)."""
        data_alpha = self.data_alpha if data_alpha is None else data_alpha
        capped = rewards if self.reward_cap is None else rewards.clamp(max=self.reward_cap)
        advantages = normalize_rewards(capped, self.normalization)
        weights = self.weight(advantages)
        use_reference = reference is not None and self.reg_alpha > 0
        per_sample = policy.per_sample_loss(
            x, cond, reference if use_reference else None, num_times=self.loss_times
        )
        loss = self.loss(per_sample.flow_matching, rearrange(weights, "g n -> (g n)"))
        stats = weight_stats(rewards, weights)
        if isinstance(self.weight, SimplexWeight):
            temperature_loss = self.weight.temperature_loss(weights)
            loss = loss + temperature_loss
            stats["temperature_loss"] = temperature_loss.detach()
            stats["tau"] = self.weight.tau
            stats["weight_kl"] = self.weight.kl_from_uniform(weights).mean()
        stats["fm_loss"] = per_sample.flow_matching.mean().detach()
        if use_reference and per_sample.divergence is not None:
            divergence = per_sample.divergence.mean()
            loss = loss + self.reg_alpha * divergence
            stats["divergence"] = divergence.detach()
        if data is not None and data_alpha > 0:
            data_cond, data_x = data
            data_loss = policy.per_sample_loss(
                data_x, data_cond, num_times=self.loss_times
            ).flow_matching.mean()
            loss = loss + data_alpha * data_loss
            stats["data_loss"] = data_loss.detach()
        return GeMPOStep(loss=loss, advantages=advantages, weights=weights, stats=stats)


def weight_stats(rewards: Tensor, weights: Tensor) -> dict[str, Tensor]:
    """Summary of a group step's rewards and weights, for logging (detached scalars)."""
    rewards, weights = rewards.detach(), weights.detach()
    magnitude = weights.abs().sum().clamp_min(1e-12)
    return {
        "reward_mean": rewards.mean(),
        "reward_median": rewards.median(),
        "reward_max": rewards.max(),
        "weight_mean": weights.mean(),
        "weight_std": weights.std() if weights.numel() > 1 else torch.zeros_like(magnitude),
        "weight_min": weights.min(),
        "negative_mass_share": weights.clamp(max=0).abs().sum() / magnitude,
    }
