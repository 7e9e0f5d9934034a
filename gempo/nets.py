"""Networks for the two paths: an MLP velocity field (actions, 2-D toys) and a dilated residual
1-D convolutional denoiser (sequences). Both end in a zero-initialised layer, so an untrained
model is the source-preserving flow (velocity 0) or the uniform denoiser."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from einops import rearrange
from torch import Tensor, nn


def module_device(module: nn.Module) -> torch.device:
    """The device of ``module``'s first parameter or buffer (the CPU for an empty module)."""
    for tensor in module.parameters():
        return tensor.device
    for tensor in module.buffers():
        return tensor.device
    return torch.device("cpu")


def freeze(module: nn.Module) -> nn.Module:
    """Put ``module`` in eval mode with gradients off; returns it."""
    module.eval()
    for parameter in module.parameters():
        parameter.requires_grad_(False)
    return module


class SinusoidalTimeEmbedding(nn.Module):
    """``t`` ``(batch,)`` in ``[0, 1]`` -> ``(batch, dim)`` sin/cos features, then an MLP."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        if dim % 2:
            raise ValueError(f"time embedding dim must be even, got {dim}")
        self.register_buffer(
            "frequencies",
            torch.exp(torch.linspace(0.0, math.log(1000.0), dim // 2)),
            persistent=False,
        )
        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, t: Tensor) -> Tensor:
        angles = rearrange(t, "b -> b 1") * self.frequencies
        return self.mlp(torch.cat([angles.sin(), angles.cos()], dim=-1))


def mlp(
    in_dim: int, out_dim: int, hidden: int, depth: int, activation: type[nn.Module]
) -> nn.Sequential:
    """``depth`` hidden layers of ``hidden`` units with ``activation``, then a linear output."""
    layers: list[nn.Module] = []
    width = in_dim
    for _ in range(depth):
        layers += [nn.Linear(width, hidden), activation()]
        width = hidden
    return nn.Sequential(*layers, nn.Linear(width, out_dim))


class MLPVelocityField(nn.Module):
    """``v_theta(x_t, t, cond)``: an MLP on ``[x_t, cond, time features]``.

    ``x_t``: ``(batch, dim)``, ``t``: ``(batch,)``, ``cond``: ``(batch, cond_dim)`` (``cond_dim``
    may be 0). Returns ``(batch, dim)``.
    """

    def __init__(
        self, dim: int, cond_dim: int = 0, hidden: int = 256, depth: int = 3, time_dim: int = 32
    ) -> None:
        super().__init__()
        self.time = SinusoidalTimeEmbedding(time_dim)
        self.net = mlp(dim + cond_dim + time_dim, dim, hidden, depth, nn.Mish)
        nn.init.zeros_(self.net[-1].weight)  # the flow starts at zero velocity
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, x_t: Tensor, t: Tensor, cond: Tensor) -> Tensor:
        return self.net(torch.cat([x_t, cond, self.time(t)], dim=-1))


class DilatedResidualBlock(nn.Module):
    """Pre-norm residual 1-D conv block with a time-conditioned scale and shift (FiLM)."""

    def __init__(self, channels: int, kernel_size: int, dilation: int, time_dim: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(1, channels)
        self.conv = nn.Conv1d(
            channels,
            channels,
            kernel_size,
            dilation=dilation,
            padding=dilation * (kernel_size - 1) // 2,
        )
        self.film = nn.Linear(time_dim, 2 * channels)
        self.mix = nn.Conv1d(channels, channels, 1)

    def forward(self, h: Tensor, time: Tensor) -> Tensor:
        scale, shift = rearrange(self.film(time), "b (two c) -> two b c 1", two=2)
        z = self.norm(h) * (1.0 + scale) + shift
        return h + self.mix(nn.functional.gelu(self.conv(nn.functional.gelu(z))))


class ConvDenoiser(nn.Module):
    """Masked-diffusion denoiser: tokens ``(batch, length)`` in ``[0, vocab_size]`` (the last is
    [MASK]) and ``t`` ``(batch,)`` -> clean-token logits ``(batch, length, vocab_size)``.

    A stack of dilated residual convolutions, as in the DNA-design literature's backbone; the
    receptive field grows with the dilations.
    """

    def __init__(
        self,
        vocab_size: int,
        channels: int = 64,
        dilations: Sequence[int] = (1, 2, 4, 8),
        kernel_size: int = 5,
        time_dim: int = 64,
    ) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.embed = nn.Embedding(vocab_size + 1, channels)
        self.time = SinusoidalTimeEmbedding(time_dim)
        self.blocks = nn.ModuleList(
            DilatedResidualBlock(channels, kernel_size, d, time_dim) for d in dilations
        )
        self.norm = nn.GroupNorm(1, channels)
        self.out = nn.Conv1d(channels, vocab_size, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x_t: Tensor, t: Tensor) -> Tensor:
        h = rearrange(self.embed(x_t), "b l c -> b c l")
        time = self.time(t)
        for block in self.blocks:
            h = block(h, time)
        return rearrange(self.out(self.norm(h)), "b v l -> b l v")
