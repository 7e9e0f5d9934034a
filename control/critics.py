"""Twin Q critics with a target copy, and the running observation normalizer."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from gempo.nets import mlp


class TwinCritic(nn.Module):
    """Two independent Q networks ``Q_k(s, a)`` on ``[obs, action]`` (clipped double Q)."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: int = 256, depth: int = 2) -> None:
        super().__init__()
        self.q1 = mlp(obs_dim + act_dim, 1, hidden, depth, nn.ReLU)
        self.q2 = mlp(obs_dim + act_dim, 1, hidden, depth, nn.ReLU)

    def forward(self, obs: Tensor, actions: Tensor) -> Tensor:
        """``obs`` ``(batch, obs_dim)``, ``actions`` ``(batch, act_dim)`` -> ``(2, batch)``."""
        inputs = torch.cat([obs, actions], dim=-1)
        return torch.stack([self.q1(inputs).squeeze(-1), self.q2(inputs).squeeze(-1)])

    def value(self, obs: Tensor, actions: Tensor) -> Tensor:
        """The pessimistic estimate ``min_k Q_k(s, a)``: ``(batch,)``."""
        return self(obs, actions).amin(dim=0)


class ObservationNormalizer(nn.Module):
    """Running mean/variance of observations (parallel Welford); ``normalize`` returns
    ``clip((obs - mean) / sqrt(var + eps), -clip, clip)``, or ``obs`` unchanged when disabled.
    The statistics are buffers, so they travel with the agent's ``state_dict``."""

    def __init__(self, obs_dim: int, enabled: bool, clip: float = 10.0, eps: float = 1e-8) -> None:
        super().__init__()
        self.enabled = enabled
        self.clip = clip
        self.eps = eps
        self.register_buffer("mean", torch.zeros(obs_dim, dtype=torch.float64))
        self.register_buffer("var", torch.ones(obs_dim, dtype=torch.float64))
        self.register_buffer("count", torch.tensor(0.0, dtype=torch.float64))

    @torch.no_grad()
    def update(self, obs: Tensor) -> None:
        """Fold a batch ``(batch, obs_dim)`` into the statistics."""
        if not self.enabled:
            return
        obs = obs.double()
        n = obs.shape[0]
        batch_mean = obs.mean(dim=0)
        batch_var = obs.var(dim=0, unbiased=False)
        total = self.count + n
        delta = batch_mean - self.mean
        self.mean += delta * n / total
        self.var.copy_(
            (self.var * self.count + batch_var * n + delta.pow(2) * self.count * n / total) / total
        )
        self.count.copy_(total)

    def forward(self, obs: Tensor) -> Tensor:
        """``(batch, obs_dim)`` -> normalized ``(batch, obs_dim)`` float32."""
        if not self.enabled:
            return obs
        scaled = (obs - self.mean.float()) / torch.sqrt(self.var.float() + self.eps)
        return scaled.clamp(-self.clip, self.clip)
