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

from gempo.paths import (
    ContinuousPathSample,
    LinearPath,
    MaskedPath,
    MaskedPathSample,
    stratified_uniform,
)
from gempo.samplers import euler_sample, masked_ancestral_sample, masked_nelbo

PathPoint = ContinuousPathSample | MaskedPathSample
"""Points on a policy's probability path (``x_t`` and ``t`` at least)."""


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

    def per_sample_loss(
        self,
        x_1: Tensor,
        cond: Tensor,
        reference: GenerativePolicy | None = None,
        num_times: int = 1,
    ) -> PolicyLoss:
        """Flow-matching loss of the samples ``x_1``, averaged over ``num_times`` stratified path
        times per sample: ``(batch,)``. More times cost more compute and lower the variance of
        each sample's loss, which the reweighting multiplies. With ``reference`` (a policy of
        the same kind), also the divergence of the two networks' outputs at the same points."""
        if reference is not None and not isinstance(reference, type(self)):
            raise TypeError(f"a {type(self).__name__} needs a reference of the same kind")
        x_1, cond = repeat_for_times(x_1, cond, num_times)
        u = stratified_uniform(x_1.shape[0] // num_times, num_times, x_1.device)
        point = self.path_point(x_1, rearrange(u, "k b -> (k b)"))
        output = self.network_output(point, cond)
        loss = PolicyLoss(self.point_loss(output, point))
        if reference is not None:
            with torch.no_grad():
                reference_output = reference.network_output(point, cond)
            loss.divergence = self.point_divergence(output, reference_output, point)
        return mean_over_times(loss, num_times)

    @abstractmethod
    def path_point(self, x_1: Tensor, u: Tensor) -> PathPoint:
        """Noisy points of the path at the uniform draws ``u`` ``(batch,)``."""

    @abstractmethod
    def network_output(self, point: PathPoint, cond: Tensor) -> Tensor:
        """The network's output at ``point`` (a velocity, or logits)."""

    @abstractmethod
    def point_loss(self, output: Tensor, point: PathPoint) -> Tensor:
        """The flow-matching loss per point ``(batch,)``."""

    @abstractmethod
    def point_divergence(self, output: Tensor, reference: Tensor, point: PathPoint) -> Tensor:
        """The divergence from the reference network's output per point ``(batch,)``."""


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

    def path_point(self, x_1: Tensor, u: Tensor) -> PathPoint:
        return self.path.sample(x_1, u)

    def network_output(self, point: PathPoint, cond: Tensor) -> Tensor:
        return self.velocity_field(point.x_t, point.t, cond)

    def point_loss(self, output: Tensor, point: PathPoint) -> Tensor:
        return self.path.per_sample_loss(output, point, self.error_clip)

    def point_divergence(self, output: Tensor, reference: Tensor, point: PathPoint) -> Tensor:
        return self.path.per_sample_divergence(output, reference)


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

    def path_point(self, x_1: Tensor, u: Tensor) -> PathPoint:
        return self.path.sample(x_1, self.path.num_masked_from_uniform(u, self.length))

    def network_output(self, point: PathPoint, cond: Tensor) -> Tensor:
        return self.denoiser(point.x_t, point.t)  # unconditional

    def point_loss(self, output: Tensor, point: PathPoint) -> Tensor:
        return self.path.per_sample_loss(output, point)

    def point_divergence(self, output: Tensor, reference: Tensor, point: PathPoint) -> Tensor:
        return self.path.per_sample_divergence(output, reference, point)

    @torch.no_grad()
    def log_likelihood(self, x_1: Tensor, num_times: int = 32) -> Tensor:
        """ELBO estimate of ``log p_theta(x_1)`` per sequence (nats): ``(batch,)``."""
        return -masked_nelbo(self.denoiser, self.path, x_1, num_times)
