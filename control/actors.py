"""Actors on the policy's action box ``[-1, 1]^act_dim``: the GeMPO flow policy and a
tanh-Gaussian SAC actor, behind one interface so both share critic, buffer and evaluation.

Observations given to an actor are already normalized; actions are in ``[-1, 1]``.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable

import torch
from einops import rearrange, repeat
from torch import Tensor, nn

from control.critics import TwinCritic, mlp
from control.profiling import SectionTimer
from gempo.errors import GempoError
from gempo.losses import GeMPOObjective
from gempo.nets import MLPVelocityField
from gempo.policies import ContinuousFlowPolicy

OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]


class Actor(nn.Module, ABC):
    """What the actor-critic loop needs from a policy."""

    optimizers: dict[str, torch.optim.Optimizer]

    @abstractmethod
    def act(self, obs: Tensor, critic: TwinCritic, explore: bool) -> Tensor:
        """Actions ``(batch, act_dim)`` for ``obs`` ``(batch, obs_dim)``; ``explore`` selects
        the behaviour (training) rule, otherwise the evaluation rule."""

    @abstractmethod
    def target_actions(self, next_obs: Tensor) -> tuple[Tensor, Tensor]:
        """Next actions ``(batch, act_dim)`` for the critic's target, and a bonus ``(batch,)``
        added to the target Q (SAC's ``-alpha * log pi``; zero for a flow policy)."""

    @abstractmethod
    def update(self, obs: Tensor, critic: TwinCritic, timer: SectionTimer) -> dict[str, Tensor]:
        """One gradient step of the actor on states ``(batch, obs_dim)``; returns stats."""


def _positive_int(name: str, value: int) -> int:
    if int(value) < 1:
        raise GempoError(f"agent.actor.{name} must be >= 1, got {value}")
    return int(value)


class FlowActor(Actor):
    """A flow policy ``pi_theta(a | s)`` (MLP velocity field on ``[a_t, s, time]``, ``steps``
    Euler steps, samples clamped to ``[-1, 1]``) improved by GeMPO.

    Actor update, for a batch of ``G`` states: draw ``N = group_size`` actions per state from
    the current policy (no gradient; all ``G * N * steps`` network calls batched), score them
    with ``min_k Q_k``, and take one step of ``objective`` (group normalization, the weight
    function, reweighted flow matching on the same actions).

    Exploration: the best of ``act_candidates`` sampled actions by ``min_k Q_k``, plus Gaussian
    noise of std ``act_noise`` (clipped to the box). Evaluation: the best of
    ``eval_candidates``, no noise.
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        objective: GeMPOObjective,
        optimizer: OptimizerFactory,
        hidden: int = 256,
        depth: int = 3,
        steps: int = 10,
        group_size: int = 16,
        act_candidates: int = 4,
        act_noise: float = 0.1,
        eval_candidates: int = 4,
        grad_clip: float | None = None,
    ) -> None:
        super().__init__()
        if act_noise < 0:
            raise GempoError(f"agent.actor.act_noise must be >= 0, got {act_noise}")
        self.policy = ContinuousFlowPolicy(
            MLPVelocityField(dim=act_dim, cond_dim=obs_dim, hidden=hidden, depth=depth),
            dim=act_dim,
            steps=_positive_int("steps", steps),
            low=-1.0,
            high=1.0,
        )
        self.objective = objective
        self.group_size = _positive_int("group_size", group_size)
        self.act_candidates = _positive_int("act_candidates", act_candidates)
        self.eval_candidates = _positive_int("eval_candidates", eval_candidates)
        self.act_noise = float(act_noise)
        self.grad_clip = grad_clip
        self.optimizers = {"actor": optimizer(self.policy.parameters())}

    @torch.no_grad()
    def best_of(self, obs: Tensor, critic: TwinCritic, candidates: int) -> Tensor:
        """The highest-``min_k Q_k`` of ``candidates`` policy samples per state:
        ``(batch, obs_dim)`` -> ``(batch, act_dim)``."""
        if candidates == 1:
            return self.policy.sample(obs)
        cond = repeat(obs, "b c -> (b n) c", n=candidates)
        actions = rearrange(self.policy.sample(cond), "(b n) a -> b n a", n=candidates)
        q = rearrange(
            critic.value(cond, rearrange(actions, "b n a -> (b n) a")), "(b n) -> b n", n=candidates
        )
        best = q.argmax(dim=-1)
        return actions[torch.arange(obs.shape[0], device=obs.device), best]

    @torch.no_grad()
    def act(self, obs: Tensor, critic: TwinCritic, explore: bool) -> Tensor:
        actions = self.best_of(
            obs, critic, self.act_candidates if explore else self.eval_candidates
        )
        if explore and self.act_noise > 0:
            actions = (actions + self.act_noise * torch.randn_like(actions)).clamp(-1.0, 1.0)
        return actions

    @torch.no_grad()
    def target_actions(self, next_obs: Tensor) -> tuple[Tensor, Tensor]:
        return self.policy.sample(next_obs), torch.zeros(next_obs.shape[0], device=next_obs.device)

    def update(self, obs: Tensor, critic: TwinCritic, timer: SectionTimer) -> dict[str, Tensor]:
        with timer.section("actor_sample"), torch.no_grad():
            cond = repeat(obs, "g c -> (g n) c", n=self.group_size)
            actions = self.policy.sample(cond)  # (G * N, act_dim), one batched Euler solve
            rewards = rearrange(critic.value(cond, actions), "(g n) -> g n", n=self.group_size)
        with timer.section("actor_step"):
            step = self.objective(self.policy, actions, cond, rewards)
            optimizer = self.optimizers["actor"]
            optimizer.zero_grad(set_to_none=True)
            step.loss.backward()
            if self.grad_clip is not None:
                nn.utils.clip_grad_norm_(self.policy.parameters(), self.grad_clip)
            optimizer.step()
        stats = {f"actor/{k}": v for k, v in step.stats.items()}
        stats["actor/loss"] = step.loss.detach()
        stats["actor/action_std"] = (
            rearrange(actions, "(g n) a -> g n a", n=self.group_size).std(1).mean()
        )
        return stats


class GaussianActor(Actor):
    """SAC's actor: ``a = tanh(mu(s) + sigma(s) * eps)`` with automatic entropy tuning toward
    ``target_entropy = -act_dim`` (Haarnoja et al., 2018). Evaluation acts with ``tanh(mu)``."""

    LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        optimizer: OptimizerFactory,
        hidden: int = 256,
        depth: int = 2,
        initial_alpha: float = 1.0,
    ) -> None:
        super().__init__()
        if initial_alpha <= 0:
            raise GempoError(f"agent.actor.initial_alpha must be > 0, got {initial_alpha}")
        self.net = mlp(obs_dim, 2 * act_dim, hidden, depth, nn.ReLU)
        self.log_alpha = nn.Parameter(torch.tensor(math.log(initial_alpha)))
        self.target_entropy = -float(act_dim)
        self.optimizers = {
            "actor": optimizer(self.net.parameters()),
            "alpha": optimizer([self.log_alpha]),
        }

    def sample(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        """Reparameterized actions ``(batch, act_dim)`` and their log-density ``(batch,)``."""
        mean, log_std = rearrange(self.net(obs), "b (two a) -> two b a", two=2)
        log_std = self.LOG_STD_MIN + 0.5 * (self.LOG_STD_MAX - self.LOG_STD_MIN) * (
            torch.tanh(log_std) + 1
        )
        normal = torch.distributions.Normal(mean, log_std.exp())
        u = normal.rsample()
        actions = torch.tanh(u)
        # change of variables through tanh, in the numerically stable form
        log_prob = normal.log_prob(u).sum(-1) - (
            2 * (math.log(2) - u - nn.functional.softplus(-2 * u))
        ).sum(-1)
        return actions, log_prob

    @torch.no_grad()
    def act(self, obs: Tensor, critic: TwinCritic, explore: bool) -> Tensor:
        if explore:
            return self.sample(obs)[0]
        mean, _ = rearrange(self.net(obs), "b (two a) -> two b a", two=2)
        return torch.tanh(mean)

    @torch.no_grad()
    def target_actions(self, next_obs: Tensor) -> tuple[Tensor, Tensor]:
        actions, log_prob = self.sample(next_obs)
        return actions, -self.log_alpha.exp() * log_prob

    def update(self, obs: Tensor, critic: TwinCritic, timer: SectionTimer) -> dict[str, Tensor]:
        with timer.section("actor_step"):
            alpha = self.log_alpha.exp().detach()
            actions, log_prob = self.sample(obs)
            loss = (alpha * log_prob - critic.value(obs, actions)).mean()
            self.optimizers["actor"].zero_grad(set_to_none=True)
            loss.backward()
            self.optimizers["actor"].step()
            alpha_loss = -(self.log_alpha * (log_prob.detach() + self.target_entropy)).mean()
            self.optimizers["alpha"].zero_grad(set_to_none=True)
            alpha_loss.backward()
            self.optimizers["alpha"].step()
        return {
            "actor/loss": loss.detach(),
            "actor/alpha": alpha,
            "actor/entropy": -log_prob.detach().mean(),
        }
