"""A uniform replay buffer of transitions, preallocated as tensors on the training device."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from gempo.errors import GempoError


@dataclass
class Transitions:
    """A batch of transitions. ``obs``/``next_obs``: ``(batch, obs_dim)`` raw observations;
    ``actions``: ``(batch, act_dim)`` in the policy's ``[-1, 1]`` box; ``rewards``,
    ``terminated``: ``(batch,)`` float (``terminated`` is 1 only for a true terminal state, not
    a time-limit truncation, so the critic still bootstraps through truncations)."""

    obs: Tensor
    actions: Tensor
    rewards: Tensor
    next_obs: Tensor
    terminated: Tensor


class ReplayBuffer:
    """A ring buffer of ``capacity`` transitions on ``device``; sampling is uniform."""

    def __init__(self, capacity: int, obs_dim: int, act_dim: int, device: torch.device) -> None:
        if capacity < 1:
            raise GempoError(f"buffer_size must be >= 1, got {capacity}")
        self.capacity = capacity
        self.device = device
        self.obs = torch.zeros(capacity, obs_dim, device=device)
        self.actions = torch.zeros(capacity, act_dim, device=device)
        self.rewards = torch.zeros(capacity, device=device)
        self.next_obs = torch.zeros(capacity, obs_dim, device=device)
        self.terminated = torch.zeros(capacity, device=device)
        self.position = 0
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def add(self, batch: Transitions) -> None:
        """Append ``batch`` (one row per vectorized env), overwriting the oldest rows when full."""
        n = batch.obs.shape[0]
        index = (self.position + torch.arange(n, device=self.device)) % self.capacity
        self.obs[index] = batch.obs
        self.actions[index] = batch.actions
        self.rewards[index] = batch.rewards
        self.next_obs[index] = batch.next_obs
        self.terminated[index] = batch.terminated
        self.position = (self.position + n) % self.capacity
        self.size = min(self.size + n, self.capacity)

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> Transitions:
        """``batch_size`` transitions drawn uniformly with replacement."""
        index = torch.randint(self.size, (batch_size,), device=self.device, generator=generator)
        return Transitions(
            obs=self.obs[index],
            actions=self.actions[index],
            rewards=self.rewards[index],
            next_obs=self.next_obs[index],
            terminated=self.terminated[index],
        )

    def state_dict(self) -> dict:
        """The filled rows (on CPU) and the write position, for a checkpoint."""
        rows = slice(0, self.size)
        return {
            "obs": self.obs[rows].cpu(),
            "actions": self.actions[rows].cpu(),
            "rewards": self.rewards[rows].cpu(),
            "next_obs": self.next_obs[rows].cpu(),
            "terminated": self.terminated[rows].cpu(),
            "position": self.position,
            "size": self.size,
            "capacity": self.capacity,
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`. With the same capacity the ring is restored as it was
        (so sampling continues exactly); with another capacity (a resumed run with a longer
        ``total_steps``) the newest rows are kept in chronological order."""
        names = ("obs", "actions", "rewards", "next_obs", "terminated")
        size, position = state["size"], state["position"]
        if state["capacity"] == self.capacity:
            for name in names:
                getattr(self, name)[:size] = state[name].to(self.device)
            self.position, self.size = position, size
            return
        order = torch.cat([torch.arange(position, size), torch.arange(0, position)])
        order = order[-self.capacity :]
        for name in names:
            getattr(self, name)[: len(order)] = state[name][order].to(self.device)
        self.size = len(order)
        self.position = self.size % self.capacity
