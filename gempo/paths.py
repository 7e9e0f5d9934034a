"""Probability paths from a source (noise / all-[MASK]) at ``t = 0`` to data at ``t = 1``.

Each path noises a clean sample ``x_1`` at time ``t``, and turns a model's output at the noisy
point into a per-sample loss whose mean over ``t`` is the flow-matching (continuous) or the
negative ELBO (discrete) objective.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from einops import rearrange
from torch import Tensor


def stratified_uniform(batch: int, num_strata: int, device: torch.device | str = "cpu") -> Tensor:
    """``(num_strata, batch)`` draws from ``U[0, 1)``; row ``k`` lies in ``[k/n, (k + 1)/n)``.

    Several path points per sample drawn this way cover ``[0, 1)`` evenly, which lowers the
    variance of per-sample losses averaged over them."""
    offsets = rearrange(torch.arange(num_strata, device=device), "k -> k 1")
    return (offsets + torch.rand(num_strata, batch, device=device)) / num_strata


@dataclass
class ContinuousPathSample:
    """A point on the linear path. ``x_t``, ``x_0``, ``x_1``, ``velocity``: ``(batch, dim)``;
    ``t``: ``(batch,)``."""

    x_t: Tensor
    t: Tensor
    x_0: Tensor
    x_1: Tensor
    velocity: Tensor


class LinearPath:
    """The linear (conditional-OT) path ``x_t = (1 - t) x_0 + t x_1`` with ``x_0 ~ N(0, I)``.

    The regression target is the conditional velocity ``x_1 - x_0``; the per-sample loss is the
    squared error averaged over dimensions.
    """

    def sample(
        self, x_1: Tensor, t: Tensor | None = None, x_0: Tensor | None = None
    ) -> ContinuousPathSample:
        """Noise ``x_1`` ``(batch, dim)`` at ``t`` ``(batch,)`` (uniform when not given)."""
        if t is None:
            t = torch.rand(x_1.shape[0], device=x_1.device, dtype=x_1.dtype)
        if x_0 is None:
            x_0 = torch.randn_like(x_1)
        t_ = rearrange(t, "b -> b 1")
        return ContinuousPathSample(
            x_t=(1.0 - t_) * x_0 + t_ * x_1, t=t, x_0=x_0, x_1=x_1, velocity=x_1 - x_0
        )

    def per_sample_loss(
        self, velocity: Tensor, sample: ContinuousPathSample, error_clip: float | None = None
    ) -> Tensor:
        """Flow-matching loss ``mean_d min((v_theta - (x_1 - x_0))^2, error_clip)``:
        ``(batch,)``; ``error_clip=None`` leaves the squared errors as they are."""
        error = (velocity - sample.velocity).pow(2)
        if error_clip is not None:
            error = error.clamp(max=error_clip)
        return error.mean(dim=-1)

    def per_sample_divergence(self, velocity: Tensor, reference_velocity: Tensor) -> Tensor:
        """Squared distance between two velocity fields at the same points: ``(batch,)``."""
        return (velocity - reference_velocity).pow(2).mean(dim=-1)


@dataclass
class MaskedPathSample:
    """A point on the masked path. ``x_t``, ``x_1``: ``(batch, length)`` long; ``is_masked``:
    ``(batch, length)`` bool; ``num_masked``: ``(batch,)`` long; ``t = 1 - num_masked / length``:
    ``(batch,)``, the share of revealed tokens (the denoiser's time input)."""

    x_t: Tensor
    t: Tensor
    x_1: Tensor
    is_masked: Tensor
    num_masked: Tensor


class MaskedPath:
    """Masked (absorbing-state) discrete diffusion with a log-linear schedule.

    Token ``l`` of ``x_1`` is revealed at time ``t`` with probability ``kappa(t) = t`` and is
    ``[MASK]`` (index ``vocab_size``) otherwise; this is the log-linear schedule of masked
    diffusion (MDLM) written with data at ``t = 1``. The model predicts clean-token logits over
    the ``vocab_size`` real tokens only (it never predicts ``[MASK]``) and its prediction is
    SUBS-parameterized: revealed tokens are copied, not predicted.

    The continuous-time negative ELBO ``E_t [ 1/(1 - t) * sum_{l masked} -log p(x_1^l | x_t) ]``
    depends on ``t`` only through which tokens are masked, so it equals the any-order form
    ``E_{k ~ U{1..L}} [ L/k * sum_{l masked} -log p(x_1^l | x_t) ]`` with exactly ``k`` of the
    ``L`` tokens masked uniformly at random. Training points are drawn that way: the weight
    ``L/k`` is bounded by ``L`` (the Bernoulli-masked estimator's ``1/(1 - t)`` is not), which
    matters when per-sample losses are reweighted. The denoiser sees ``t = 1 - k/L``.
    """

    def __init__(self, vocab_size: int) -> None:
        self.vocab_size = int(vocab_size)
        self.mask_index = self.vocab_size

    def sample(self, x_1: Tensor, num_masked: Tensor | None = None) -> MaskedPathSample:
        """Mask exactly ``num_masked`` ``(batch,)`` tokens of each row of ``x_1``
        ``(batch, length)``, uniformly at random (``num_masked ~ U{1..length}`` when not given)."""
        batch, length = x_1.shape
        if num_masked is None:
            num_masked = self.num_masked_from_uniform(torch.rand(batch, device=x_1.device), length)
        ranks = torch.rand(x_1.shape, device=x_1.device).argsort(dim=-1).argsort(dim=-1)
        is_masked = ranks < rearrange(num_masked, "b -> b 1")
        x_t = torch.where(is_masked, torch.full_like(x_1, self.mask_index), x_1)
        t = 1.0 - num_masked.float() / length
        return MaskedPathSample(x_t=x_t, t=t, x_1=x_1, is_masked=is_masked, num_masked=num_masked)

    def num_masked_from_uniform(self, u: Tensor, length: int) -> Tensor:
        """Mask counts in ``1..length`` from uniforms ``u`` in ``[0, 1)`` (same shape, long)."""
        return (u * length).floor().long().clamp(0, length - 1) + 1

    def elbo_weight(self, sample: MaskedPathSample) -> Tensor:
        """``L / k``, the any-order ELBO weight of a point with ``k`` masked tokens ``(batch,)``."""
        return sample.x_1.shape[-1] / sample.num_masked.float()

    def log_probs(self, logits: Tensor, x_t: Tensor) -> Tensor:
        """SUBS log-probabilities of the clean token, ``(batch, length, vocab_size)``.

        ``logits``: ``(batch, length, vocab_size)`` over real tokens. At revealed positions the
        distribution is a point mass on the revealed token (log-prob 0 there, ``-inf``
        elsewhere).
        """
        if logits.shape[-1] != self.vocab_size:
            raise ValueError(
                f"denoiser must output {self.vocab_size} logits per position (no [MASK] logit), "
                f"got {logits.shape[-1]}"
            )
        log_probs = torch.log_softmax(logits.float(), dim=-1)
        revealed = x_t != self.mask_index
        carry = torch.full_like(log_probs, float("-inf"))
        carry.scatter_(-1, x_t.clamp(max=self.vocab_size - 1).unsqueeze(-1), 0.0)
        return torch.where(revealed.unsqueeze(-1), carry, log_probs)

    def per_sample_loss(self, logits: Tensor, sample: MaskedPathSample) -> Tensor:
        """One-sample estimate of the sequence's negative ELBO (nats): ``(batch,)``."""
        log_probs = torch.log_softmax(logits.float(), dim=-1)
        token_nll = -log_probs.gather(-1, sample.x_1.unsqueeze(-1)).squeeze(-1)
        masked_nll = (token_nll * sample.is_masked).sum(dim=-1)
        return self.elbo_weight(sample) * masked_nll

    def per_sample_divergence(
        self, logits: Tensor, reference_logits: Tensor, sample: MaskedPathSample
    ) -> Tensor:
        """ELBO-weighted ``sum_{l masked} KL(p_theta(.|x_t) || p_ref(.|x_t))``: ``(batch,)``.

        Averaged over the masking and over samples of ``p_theta`` this is the KL between the two
        models' reverse processes (the regularizer toward a pretrained model)."""
        log_p = torch.log_softmax(logits.float(), dim=-1)
        log_q = torch.log_softmax(reference_logits.float(), dim=-1)
        kl = (log_p.exp() * (log_p - log_q)).sum(dim=-1)
        return self.elbo_weight(sample) * (kl * sample.is_masked).sum(dim=-1)
