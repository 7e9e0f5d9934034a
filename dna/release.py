"""The published enhancer benchmark's pretrained generator, layer for layer.

The release's ``pretrained.ckpt`` is an MDLM Lightning checkpoint: absorbing-state diffusion over
A, C, G, T plus a mask token (index 4, vocabulary 5), log-linear noise, SUBS parameterisation and
no time conditioning. Its backbone is a 1-D CNN over the 5-channel one-hot: an input convolution,
``stacks`` x ``len(dilations)`` pre-norm residual convolutions (each dilation repeated ``stacks``
times in a row, the release's layer order), each after adding a projection of a Gaussian-Fourier
time embedding, and a two-layer 1x1 convolution head to 5 logits. :class:`MDLMConvBackbone` has
the release's parameter names and shapes (its ``state_dict`` holds them under ``backbone.``; the
EMA weights are stored separately, under ``ema.shadow_params``, in the order of the trainable
parameters). :class:`ReleaseDenoiser` adapts it to gempo's denoiser interface: the mask logit is
dropped (SUBS never predicts the mask) and the time input is 0 (no time conditioning).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch
from einops import rearrange
from torch import Tensor, nn

from dna.sequences import VOCAB_SIZE
from gempo.errors import GempoError

RELEASE_PREFIX = "backbone."
"""Prefix of the backbone's weights in the release checkpoint's ``state_dict``."""
FOURIER_SCALE = 30.0
"""Standard deviation of the Gaussian-Fourier frequencies at initialisation (fixed, not
trained; the release's values are loaded over them)."""


class FourierTime(nn.Module):
    """Gaussian random Fourier features of a scalar time: ``(batch,)`` -> ``(batch, dim)``.

    The frequencies ``W`` ``(dim // 2,)`` are a parameter that is never trained (so it is saved
    in the ``state_dict`` but left out of an EMA of the trainable parameters)."""

    def __init__(self, dim: int, scale: float = FOURIER_SCALE) -> None:
        super().__init__()
        self.W = nn.Parameter(torch.randn(dim // 2) * scale, requires_grad=False)

    def forward(self, t: Tensor) -> Tensor:
        angles = 2 * math.pi * rearrange(t, "b -> b 1") * self.W
        return torch.cat([angles.sin(), angles.cos()], dim=-1)


class TimeProjection(nn.Module):
    """A linear map of the time embedding, ``(batch, dim) -> (batch, dim)`` (the release's name
    for it holds one ``dense`` layer)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dense = nn.Linear(dim, dim)

    def forward(self, time: Tensor) -> Tensor:
        return self.dense(time)


class MDLMConvBackbone(nn.Module):
    """The release's denoiser network: tokens ``(batch, length)`` in ``0..vocab_size - 1`` (the
    last is the mask) and a time ``(batch,)`` -> logits ``(batch, length, vocab_size)``."""

    def __init__(
        self,
        vocab_size: int = VOCAB_SIZE + 1,
        hidden: int = 128,
        kernel_size: int = 9,
        dilations: Sequence[int] = (1, 1, 4, 16, 64),
        stacks: int = 4,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.linear = nn.Conv1d(vocab_size, hidden, kernel_size, padding=kernel_size // 2)
        self.time_embedder = nn.Sequential(FourierTime(hidden), nn.Linear(hidden, hidden))
        layer_dilations = [d for d in dilations for _ in range(stacks)]
        self.convs = nn.ModuleList(
            nn.Conv1d(hidden, hidden, kernel_size, dilation=d, padding=d * (kernel_size // 2))
            for d in layer_dilations
        )
        self.time_layers = nn.ModuleList(TimeProjection(hidden) for _ in layer_dilations)
        self.norms = nn.ModuleList(nn.LayerNorm(hidden) for _ in layer_dilations)
        self.final_conv = nn.Sequential(
            nn.Conv1d(hidden, hidden, 1), nn.ReLU(), nn.Conv1d(hidden, vocab_size, 1)
        )
        self.dropout = nn.Dropout(dropout)

    def forward(self, tokens: Tensor, time: Tensor) -> Tensor:
        hot = nn.functional.one_hot(tokens, self.vocab_size).float()
        feat = torch.relu(self.linear(rearrange(hot, "b l v -> b v l")))
        embedding = torch.relu(self.time_embedder(time))
        for conv, time_layer, norm in zip(self.convs, self.time_layers, self.norms, strict=True):
            h = self.dropout(feat) + rearrange(time_layer(embedding), "b c -> b c 1")
            h = rearrange(norm(rearrange(h, "b c l -> b l c")), "b l c -> b c l")
            feat = feat + torch.relu(conv(h))
        return rearrange(self.final_conv(feat), "b v l -> b l v")


class ReleaseDenoiser(nn.Module):
    """gempo's denoiser interface over :class:`MDLMConvBackbone`: ``(x_t (batch, length) in
    0..4, t (batch,)) -> (batch, length, 4)`` clean-token logits. The release is not
    time-conditioned (its backbone always sees time 0); SUBS gives the mask token probability 0,
    so its logit is dropped."""

    def __init__(self, backbone: MDLMConvBackbone) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, x_t: Tensor, t: Tensor) -> Tensor:
        return self.backbone(x_t, torch.zeros_like(t))[..., :VOCAB_SIZE]


def is_release_checkpoint(payload: dict) -> bool:
    """Whether a checkpoint dict looks like the release's MDLM Lightning checkpoint."""
    state = payload.get("state_dict")
    return isinstance(state, dict) and any(str(k).startswith(RELEASE_PREFIX) for k in state)


def release_backbone_state(payload: dict, backbone: nn.Module, ema: bool, path: Path) -> dict:
    """The backbone's ``state_dict`` from a release checkpoint dict: the ``backbone.*`` weights,
    with the EMA's shadow parameters over the trainable ones when ``ema`` is true."""
    state = {
        k[len(RELEASE_PREFIX) :]: v
        for k, v in payload["state_dict"].items()
        if k.startswith(RELEASE_PREFIX)
    }
    if not ema:
        return state
    shadow = (payload.get("ema") or {}).get("shadow_params")
    if shadow is None:
        raise GempoError(f"{path}: no EMA weights (ema.shadow_params); pass pretrained_ema=false")
    trainable = [name for name, p in backbone.named_parameters() if p.requires_grad]
    if len(shadow) != len(trainable):
        raise GempoError(
            f"{path}: {len(shadow)} EMA tensors for the {len(trainable)} trainable tensors of "
            "model=drakes_release; the file is not the release's generator"
        )
    return {**state, **dict(zip(trainable, shadow, strict=True))}
