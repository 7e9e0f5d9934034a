"""Actors on the policy's action box ``[-1, 1]^act_dim``: the GeMPO flow policy (tanh of a
flow's sample) and a tanh-Gaussian SAC actor, behind one interface so both share critic,
buffer and evaluation.

Observations given to an actor are already normalized; actions are in ``[-1, 1]``.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Collection
from typing import Literal

import torch
from einops import rearrange
from torch import Tensor, nn

from control.critics import TwinCritic
from control.profiling import SectionTimer
from gempo.errors import GempoError
from gempo.groups import draw_groups
from gempo.losses import GeMPOObjective
from gempo.module import GeMPOModule, OptimizerFactory
from gempo.nets import MLPVelocityField, mlp
from gempo.policies import ContinuousFlowPolicy
from gempo.weights import SimplexWeight

ActMode = Literal["explore", "eval", "eval_raw"]
"""``explore``: the behaviour rule while training; ``eval``: the evaluation rule; ``eval_raw``:
one plain policy sample (a flow policy's counterpart of SAC's mean action)."""


class Actor(nn.Module, ABC):
    """What the actor-critic loop needs from a policy."""

    actor_optimizers: dict[str, torch.optim.Optimizer]
    """The actor's optimizers by name (the agent steps and checkpoints them with the critic's)."""

    @abstractmethod
    def act(self, obs: Tensor, critic: TwinCritic, mode: ActMode) -> Tensor:
        """Actions ``(batch, act_dim)`` for ``obs`` ``(batch, obs_dim)`` under ``mode``."""

    @abstractmethod
    def target_actions(self, next_obs: Tensor) -> tuple[Tensor, Tensor]:
        """Next actions ``(batch, act_dim)`` for the critic's target, and a bonus ``(batch,)``
        added to the target Q (SAC's ``-alpha * log pi``; zero for a flow policy)."""

    HOT_PATHS: tuple[str, ...] = ()
    """Methods that :meth:`compile_hot_paths` compiles."""
    RAW_IS_EVAL = False
    """Whether ``eval_raw`` acts exactly as ``eval`` (then one evaluation serves both)."""

    def compile_hot_paths(self, mode: str) -> None:
        """``torch.compile`` the tensor work of acting and updating (``mode``: ``default``,
        ``reduce-overhead``, which captures CUDA graphs on a GPU, or ``max-autotune``)."""
        for name in self.HOT_PATHS:
            setattr(self, name, torch.compile(getattr(self, name), mode=mode))

    @abstractmethod
    def update(self, obs: Tensor, critic: TwinCritic, timer: SectionTimer) -> dict[str, Tensor]:
        """One gradient step of the actor on states ``(batch, obs_dim)``; returns stats."""


def _positive_int(name: str, value: int) -> int:
    if int(value) < 1:
        raise GempoError(f"agent.actor.{name} must be >= 1, got {value}")
    return int(value)


def _choice(name: str, value: str, options: Collection[str]) -> None:
    if value not in options:
        raise GempoError(f"agent.actor.{name} must be one of {', '.join(options)}, got {value}")


SCORES = ("mean", "min")
NOISE_SPACES = ("action", "latent")
SAMPLE_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
AT_BOUND = 0.999
"""An action coordinate with ``|a| >= AT_BOUND`` counts as at the box's face."""


class FlowActor(GeMPOModule, Actor):
    """A flow policy on ``R^act_dim`` (MLP velocity field on ``[u_t, s, time]``, ``steps``
    Euler steps) whose samples ``u`` act as ``a = tanh(u)`` in the box ``[-1, 1]^act_dim``,
    improved by GeMPO: the core's :class:`~gempo.module.GeMPOModule`, specialised for the
    actor-critic loop, which drives its step (manual optimisation) once per actor update.

    Actor update, for ``G`` states (``actor_batch`` of the critic's batch, or all of it): the
    core's step with the states as contexts. Its proposal policy (a frozen copy of the policy
    refreshed every ``proposal_every`` actor updates) draws ``N = group_size`` actions per
    state, plus Gaussian noise of std ``proposal_noise`` on the action as in the reference, or
    on the latent ``u`` (``proposal_noise_space``), kept within ``|a| <= 0.999``
    (:meth:`propose`); the critic scores the noisy actions (``score``: the mean or the min of
    the twin heads); ``objective`` weights them and fits the flow to their
    latents ``atanh(a)`` (with the temperature's own loss when it is learned), and one
    optimizer step covers the policy and the temperature. All ``G * N * steps`` network calls
    of the proposal are one batched solve, run in ``sample_dtype`` (``bfloat16`` autocast; no
    gradient flows through it).

    The flow lives on ``R^act_dim`` and is never fitted to samples clamped onto the box's
    faces; the box is reached by ``tanh``, a bijection, as in SAC.

    Acting: ``explore`` is the best of ``act_candidates`` samples by ``min_k Q_k`` plus
    Gaussian noise of std ``act_noise`` on the action (the reference: 1 sample, no noise);
    ``eval`` the best of ``eval_candidates`` by ``min_k Q_k``; ``eval_raw`` one sample.
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        objective: GeMPOObjective,
        optimizer: OptimizerFactory,
        hidden: int = 256,
        depth: int = 3,
        time_dim: int = 64,
        steps: int = 20,
        group_size: int = 64,
        actor_batch: int | None = None,
        proposal_every: int = 1000,
        proposal_noise: float = 0.2,
        proposal_noise_space: str = "action",
        score: str = "mean",
        error_clip: float | None = 5.0,
        sample_dtype: str = "float32",
        act_candidates: int = 1,
        act_noise: float = 0.0,
        eval_candidates: int = 10,
        grad_clip: float | None = None,
    ) -> None:
        for name, value in (("act_noise", act_noise), ("proposal_noise", proposal_noise)):
            if value < 0:
                raise GempoError(f"agent.actor.{name} must be >= 0, got {value}")
        _choice("proposal_noise_space", proposal_noise_space, NOISE_SPACES)
        _choice("score", score, SCORES)
        _choice("sample_dtype", sample_dtype, SAMPLE_DTYPES)
        if error_clip is not None and not error_clip > 0:
            raise GempoError(f"agent.actor.error_clip must be > 0 or null, got {error_clip}")
        policy = ContinuousFlowPolicy(
            MLPVelocityField(
                dim=act_dim, cond_dim=obs_dim, hidden=hidden, depth=depth, time_dim=time_dim
            ),
            dim=act_dim,
            steps=_positive_int("steps", steps),
            error_clip=error_clip,
        )
        super().__init__(
            policy=policy,
            reward=None,  # the critic, passed at each update
            objective=objective,
            optimizer=optimizer,
            group_size=_positive_int("group_size", group_size),
            refresh_every=_positive_int("proposal_every", proposal_every),
        )
        self.automatic_optimization = False
        if isinstance(objective.weight, SimplexWeight):
            objective.weight.check_group_size(self.group_size)
        self.actor_batch = (
            None if actor_batch is None else _positive_int("actor_batch", actor_batch)
        )
        self.proposal_noise = float(proposal_noise)
        self.proposal_noise_space = proposal_noise_space
        self.score_rule = score
        self.sample_dtype = SAMPLE_DTYPES[sample_dtype]
        self.act_candidates = _positive_int("act_candidates", act_candidates)
        self.eval_candidates = _positive_int("eval_candidates", eval_candidates)
        self.act_noise = float(act_noise)
        self.grad_clip = grad_clip
        self.actor_optimizers = {"actor": self.configure_optimizers()}

    HOT_PATHS = ("best_of", "target_actions", "proposals", "fit_loss")

    @torch.no_grad()
    def sample_latents(self, policy: ContinuousFlowPolicy, obs: Tensor) -> Tensor:
        """One latent ``u`` per row of ``obs``: ``(batch, act_dim)`` float32, drawn in
        ``sample_dtype``."""
        if self.sample_dtype == torch.float32:
            return policy.sample(obs)
        with torch.autocast(obs.device.type, dtype=self.sample_dtype):
            return policy.sample(obs).float()

    @torch.no_grad()
    def best_of(self, obs: Tensor, critic: TwinCritic, candidates: int) -> Tensor:
        """The highest-``min_k Q_k`` of ``candidates`` policy actions per state:
        ``(batch, obs_dim)`` -> ``(batch, act_dim)``."""
        if candidates == 1:
            return torch.tanh(self.sample_latents(self.policy, obs))
        groups = draw_groups(
            obs, candidates, lambda cond: torch.tanh(self.sample_latents(self.policy, cond)),
            critic.value,
        )  # fmt: skip
        actions = rearrange(groups.x, "(b n) a -> b n a", n=candidates)
        return actions[torch.arange(obs.shape[0], device=obs.device), groups.rewards.argmax(-1)]

    @torch.no_grad()
    def act(self, obs: Tensor, critic: TwinCritic, mode: ActMode) -> Tensor:
        if mode == "eval_raw":
            return self.best_of(obs, critic, 1)
        if mode == "eval":
            return self.best_of(obs, critic, self.eval_candidates)
        actions = self.best_of(obs, critic, self.act_candidates)
        if self.act_noise > 0:
            actions = (actions + self.act_noise * torch.randn_like(actions)).clamp(-1.0, 1.0)
        return actions

    @torch.no_grad()
    def target_actions(self, next_obs: Tensor) -> tuple[Tensor, Tensor]:
        actions = torch.tanh(self.sample_latents(self.policy, next_obs))
        return actions, torch.zeros(next_obs.shape[0], device=next_obs.device)

    @torch.no_grad()
    def proposals(self, obs: Tensor, critic: TwinCritic) -> tuple[Tensor, Tensor, Tensor]:
        """The core's draw with the critic as the score: ``cond`` ``(G * N, obs_dim)``, latents
        ``(G * N, act_dim)`` of the frozen proposal's actions plus noise, and their scores
        ``(G, N)``."""
        groups = self.draw(obs, lambda cond, a: self.candidate_scores(critic(cond, a)))
        # the flow is fitted to the latent of the noisy action (kept inside the faces, so the
        # latent stays finite)
        return groups.cond, torch.atanh(groups.x), groups.rewards

    def propose(self, cond: Tensor) -> Tensor:
        """One action of the frozen proposal per row of ``cond``, plus Gaussian noise of std
        ``proposal_noise``, clamped inside the faces: ``(batch, act_dim)``. The noise is added
        to the action ``tanh(u)`` as in the reference (near a face it pushes candidates onto
        the clamp, whose latent is ``atanh(0.999)``) or, with ``proposal_noise_space: latent``,
        to ``u``, where it moves an action less the closer it is to a face."""
        latents = self.sample_latents(self.proposal, cond)
        if self.proposal_noise_space == "latent":
            actions = torch.tanh(latents + self.proposal_noise * torch.randn_like(latents))
        else:
            actions = torch.tanh(latents) + self.proposal_noise * torch.randn_like(latents)
        return actions.clamp(-AT_BOUND, AT_BOUND)

    def candidate_scores(self, q: Tensor) -> Tensor:
        """The critic's ``(2, batch)`` values as one score per candidate: their mean or min."""
        return q.mean(0) if self.score_rule == "mean" else q.amin(0)

    def fit_loss(
        self, latents: Tensor, cond: Tensor, scores: Tensor
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """The core's loss on a group batch and its stats (scalar tensors)."""
        step = self.gempo_loss(cond, latents, scores)
        return step.loss, step.stats

    def update(self, obs: Tensor, critic: TwinCritic, timer: SectionTimer) -> dict[str, Tensor]:
        if self.actor_batch is not None:
            obs = obs[: self.actor_batch]
        with timer.section("actor_sample"):
            cond, latents, scores = self.proposals(obs, critic)
        with timer.section("actor_step"):
            loss, step_stats = self.fit_loss(latents, cond, scores)
            optimizer = self.actor_optimizers["actor"]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if self.grad_clip is not None:
                nn.utils.clip_grad_norm_(self.policy.parameters(), self.grad_clip)
            optimizer.step()
        self.after_update()
        actions = rearrange(torch.tanh(latents), "(g n) a -> g n a", n=self.group_size)
        stats = {f"actor/{k}": v for k, v in step_stats.items()}
        stats["actor/loss"] = loss.detach()
        stats["actor/action_std"] = actions.std(1).mean()
        stats["actor/at_bound"] = (actions.abs() >= AT_BOUND).any(-1).float().mean()
        return stats


class GaussianActor(Actor):
    """SAC's actor: ``a = tanh(mu(s) + sigma(s) * eps)`` with automatic entropy tuning toward
    ``target_entropy = -act_dim`` (Haarnoja et al., 2018). Evaluation acts with ``tanh(mu)``."""

    LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0
    RAW_IS_EVAL = True  # both act with the mean action

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
        self.actor_optimizers = {
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
    def act(self, obs: Tensor, critic: TwinCritic, mode: ActMode) -> Tensor:
        if mode == "explore":
            return self.sample(obs)[0]
        mean, _ = rearrange(self.net(obs), "b (two a) -> two b a", two=2)
        return torch.tanh(mean)

    @torch.no_grad()
    def target_actions(self, next_obs: Tensor) -> tuple[Tensor, Tensor]:
        actions, log_prob = self.sample(next_obs)
        return actions, -self.log_alpha.exp() * log_prob

    HOT_PATHS = ("act", "target_actions", "actor_loss")

    def actor_loss(self, obs: Tensor, critic: TwinCritic) -> tuple[Tensor, Tensor, Tensor]:
        """SAC's actor loss, the temperature ``alpha`` and the actions' log-densities."""
        alpha = self.log_alpha.exp().detach()
        actions, log_prob = self.sample(obs)
        return (alpha * log_prob - critic.value(obs, actions)).mean(), alpha, log_prob

    def update(self, obs: Tensor, critic: TwinCritic, timer: SectionTimer) -> dict[str, Tensor]:
        with timer.section("actor_step"):
            loss, alpha, log_prob = self.actor_loss(obs, critic)
            self.actor_optimizers["actor"].zero_grad(set_to_none=True)
            loss.backward()
            self.actor_optimizers["actor"].step()
            alpha_loss = -(self.log_alpha * (log_prob.detach() + self.target_entropy)).mean()
            self.actor_optimizers["alpha"].zero_grad(set_to_none=True)
            alpha_loss.backward()
            self.actor_optimizers["alpha"].step()
        return {
            "actor/loss": loss.detach(),
            "actor/alpha": alpha,
            "actor/entropy": -log_prob.detach().mean(),
        }
