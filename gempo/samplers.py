"""Samplers for both paths and the masked model's likelihood estimator.

All of them are batched over every row at once (contexts x samples): the only Python loop is
over integration / denoising steps.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from einops import rearrange
from torch import Tensor

from gempo.paths import MaskedPath, stratified_uniform

VelocityField = Callable[[Tensor, Tensor, Tensor], Tensor]
"""``(x_t (batch, dim), t (batch,), cond (batch, cond_dim)) -> velocity (batch, dim)``."""

Denoiser = Callable[[Tensor, Tensor], Tensor]
"""``(x_t (batch, length) long, t (batch,)) -> logits (batch, length, vocab_size)``."""


@torch.no_grad()
def euler_sample(velocity_field: VelocityField, x_0: Tensor, cond: Tensor, steps: int) -> Tensor:
    """Integrate ``dx/dt = v(x, t, cond)`` from ``t = 0`` to ``1`` with ``steps`` Euler steps.

    ``x_0``: ``(batch, dim)`` source noise; ``cond``: ``(batch, cond_dim)``. Returns
    ``(batch, dim)``.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    x = x_0
    dt = 1.0 / steps
    for i in range(steps):
        t = torch.full((x.shape[0],), i * dt, device=x.device, dtype=x.dtype)
        x = x + dt * velocity_field(x, t, cond)
    return x


@torch.no_grad()
def masked_ancestral_sample(
    denoiser: Denoiser,
    path: MaskedPath,
    batch_size: int,
    length: int,
    steps: int,
    device: torch.device | str = "cpu",
    temperature: float = 1.0,
) -> Tensor:
    """Ancestral sampling of the masked path from all-[MASK] at ``t = 0`` to data at ``t = 1``.

    Between grid times ``t < s`` a still-masked token is revealed with probability
    ``(kappa(s) - kappa(t)) / (1 - kappa(t))``, drawn from the SUBS clean-token distribution; the
    last step reveals everything. The denoiser is called again only after some token changed.
    Returns ``(batch_size, length)`` long tokens in ``[0, vocab_size)``.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    x = torch.full((batch_size, length), path.mask_index, dtype=torch.long, device=device)
    times = torch.linspace(0.0, 1.0, steps + 1, device=device)
    probs: Tensor | None = None
    for i in range(steps):
        t, s = times[i], times[i + 1]
        if probs is None:
            logits = denoiser(x, t.expand(batch_size))
            probs = torch.softmax(logits.float() / temperature, dim=-1)
        reveal_prob = (s - t) / (1.0 - t)
        masked = x == path.mask_index
        reveal = masked & (torch.rand(x.shape, device=device) < reveal_prob)
        if reveal.any():
            draw = torch.multinomial(rearrange(probs, "b l v -> (b l) v"), 1)
            draw = rearrange(draw, "(b l) 1 -> b l", b=batch_size)
            x = torch.where(reveal, draw, x)
            probs = None
    return x


def masked_nelbo(denoiser: Denoiser, path: MaskedPath, x_1: Tensor, num_times: int = 32) -> Tensor:
    """Negative ELBO of each sequence (nats), estimated at ``num_times`` stratified mask counts.

    ``x_1``: ``(batch, length)``. Returns ``(batch,)``; ``-masked_nelbo`` lower-bounds the
    sequence log-likelihood and equals it when the model's conditionals come from one joint
    distribution.
    """
    batch, length = x_1.shape
    total = torch.zeros(batch, device=x_1.device)
    strata = path.num_masked_from_uniform(stratified_uniform(batch, num_times, x_1.device), length)
    for num_masked in strata:
        sample = path.sample(x_1, num_masked)
        total = total + path.per_sample_loss(denoiser(sample.x_t, sample.t), sample)
    return total / num_times
