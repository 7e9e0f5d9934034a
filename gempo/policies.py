"""Generative policies: a network plus its probability path and sampler.

A policy samples ``x ~ pi_theta(. | cond)`` (one sample per row of ``cond``) and returns the
per-sample flow-matching loss of given samples, optionally with its divergence from a
reference policy at the same noisy points. ``cond`` is ``(batch, cond_dim)``; unconditional
policies (DNA) take ``cond_dim = 0``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
from einops import rearrange, reduce, repeat
from torch import Tensor, nn

from gempo.paths import LinearPath, MaskedPath, stratified_uniform
from gempo.samplers import euler_sample, masked_ancestral_sample, masked_nelbo


@dataclass
class PolicyLoss:
    """Per-sample losses ``(batch,)``: flow matching, and the divergence from the reference
    policy (``None`` when no reference is given)."""

    flow_matching: Tensor
    divergence: Tensor | None = None


class GenerativePolicy(nn.Module, ABC):
    """The interface GeMPO needs from a flow/diffusion policy."""

    @abstractmethod
    def sample(self, cond: Tensor) -> Tensor:
        """One sample per row of ``cond`` ``(batch, cond_dim)``; no gradient."""

    @abstractmethod
    def per_sample_loss(
        self,
        x_1: Tensor,
        cond: Tensor,
        reference: GenerativePolicy | None = None,
        num_times: int = 1,
    ) -> PolicyLoss:
        """Flow-matching loss of the samples ``x_1``, averaged over ``num_times`` stratified path
        times per sample: ``(batch,)``. More times cost more compute and lower the variance of
        each sample's loss, which the reweighting multiplies."""


def repeat_for_times(x_1: Tensor, cond: Tensor, num_times: int) -> tuple[Tensor, Tensor]:
    """``x_1`` ``(batch, ...)`` and ``cond`` ``(batch, cond_dim)`` repeated ``num_times`` times,
    stratum-major: ``(num_times * batch, ...)``."""
    if num_times < 1:
        raise ValueError(f"num_times must be >= 1, got {num_times}")
    return (
        repeat(x_1, "b ... -> (k b) ...", k=num_times),
        repeat(cond, "b c -> (k b) c", k=num_times),
    )


def mean_over_times(loss: PolicyLoss, num_times: int) -> PolicyLoss:
    """Average the stratum-major per-point losses of :func:`repeat_for_times` per sample."""

    def average(values: Tensor | None) -> Tensor | None:
        return None if values is None else reduce(values, "(k b) -> b", "mean", k=num_times)

    return PolicyLoss(average(loss.flow_matching), average(loss.divergence))


class ContinuousFlowPolicy(GenerativePolicy):
    """A flow on ``R^dim`` along the linear path, sampled with ``steps`` Euler steps.

    The flow is unbounded: a bounded space (an action box) is reached by a bijection outside
    the policy (``tanh`` in :class:`control.actors.FlowActor`), so the flow is never fitted to
    samples piled up on the box's faces. ``error_clip``: the per-element squared error of the
    flow-matching loss is capped at this value (``None``: no cap), which bounds what one
    outlying sample can contribute to a weighted loss.
    """

    def __init__(
        self,
        velocity_field: nn.Module,
        dim: int,
        steps: int = 10,
        error_clip: float | None = None,
    ) -> None:
        super().__init__()
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        if error_clip is not None and not error_clip > 0:
            raise ValueError(f"error_clip must be > 0 or None, got {error_clip}")
        self.velocity_field = velocity_field
        self.dim = dim
        self.steps = steps
        self.error_clip = error_clip
        self.path = LinearPath()

    @torch.no_grad()
    def sample(self, cond: Tensor) -> Tensor:
        x_0 = torch.randn(cond.shape[0], self.dim, device=cond.device)
        return euler_sample(self.velocity_field, x_0, cond, self.steps)

    def per_sample_loss(
        self,
        x_1: Tensor,
        cond: Tensor,
        reference: GenerativePolicy | None = None,
        num_times: int = 1,
    ) -> PolicyLoss:
        x_1, cond = repeat_for_times(x_1, cond, num_times)
        u = stratified_uniform(x_1.shape[0] // num_times, num_times, x_1.device)
        point = self.path.sample(x_1, rearrange(u, "k b -> (k b)"))
        velocity = self.velocity_field(point.x_t, point.t, cond)
        loss = PolicyLoss(self.path.per_sample_loss(velocity, point, self.error_clip))
        if reference is not None:
            if not isinstance(reference, ContinuousFlowPolicy):
                raise TypeError("a continuous policy needs a continuous reference policy")
            with torch.no_grad():
                ref_velocity = reference.velocity_field(point.x_t, point.t, cond)
            loss.divergence = self.path.per_sample_divergence(velocity, ref_velocity)
        return mean_over_times(loss, num_times)


class MaskedDiffusionPolicy(GenerativePolicy):
    """Masked discrete diffusion over ``vocab_size`` tokens and sequences of ``length``,
    sampled ancestrally with ``steps`` denoising steps. Unconditional: ``cond`` only sets the
    batch size and device."""

    def __init__(
        self,
        denoiser: nn.Module,
        vocab_size: int,
        length: int,
        steps: int = 128,
        temperature: float = 1.0,
    ) -> None:
        super().__init__()
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        self.denoiser = denoiser
        self.length = length
        self.steps = steps
        self.temperature = temperature
        self.path = MaskedPath(vocab_size)

    @torch.no_grad()
    def sample(self, cond: Tensor) -> Tensor:
        return masked_ancestral_sample(
            self.denoiser,
            self.path,
            batch_size=cond.shape[0],
            length=self.length,
            steps=self.steps,
            device=cond.device,
            temperature=self.temperature,
        )

    def per_sample_loss(
        self,
        x_1: Tensor,
        cond: Tensor,
        reference: GenerativePolicy | None = None,
        num_times: int = 1,
    ) -> PolicyLoss:
        x_1, cond = repeat_for_times(x_1, cond, num_times)
        u = stratified_uniform(x_1.shape[0] // num_times, num_times, x_1.device)
        num_masked = self.path.num_masked_from_uniform(rearrange(u, "k b -> (k b)"), self.length)
        point = self.path.sample(x_1, num_masked)
        logits = self.denoiser(point.x_t, point.t)
        loss = PolicyLoss(self.path.per_sample_loss(logits, point))
        if reference is not None:
            if not isinstance(reference, MaskedDiffusionPolicy):
                raise TypeError("a masked diffusion policy needs a masked diffusion reference")
            with torch.no_grad():
                ref_logits = reference.denoiser(point.x_t, point.t)
            loss.divergence = self.path.per_sample_divergence(logits, ref_logits, point)
        return mean_over_times(loss, num_times)

    @torch.no_grad()
    def log_likelihood(self, x_1: Tensor, num_times: int = 32) -> Tensor:
        """ELBO estimate of ``log p_theta(x_1)`` per sequence (nats): ``(batch,)``."""
        return -masked_nelbo(self.denoiser, self.path, x_1, num_times)
