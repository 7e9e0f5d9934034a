"""The off-policy actor-critic: twin Q critics with Polyak-averaged targets, a pluggable actor
(:class:`~control.actors.FlowActor` for GeMPO, :class:`~control.actors.GaussianActor` for
SAC) and the observation normalizer, with one ``update`` per gradient step."""

from __future__ import annotations

import copy

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import Tensor, nn

from control.actors import ActMode, Actor
from control.critics import ObservationNormalizer, TwinCritic
from control.profiling import SectionTimer
from control.replay import Transitions
from gempo.errors import GempoError
from gempo.module import OptimizerFactory


class ActorCritic(nn.Module):
    """Critic update ``y = r + gamma * (1 - terminated) * (min_k Q'_k(s', a') + bonus)`` with
    ``a' ~ pi(s')``; the actor is updated every ``actor_every`` critic updates; the target
    critic tracks the critic with rate ``tau`` after every update.

    Observations enter raw and are normalized here, so the replay buffer keeps raw ones and
    always sees the current statistics.
    """

    def __init__(
        self,
        actor: Actor,
        critic: TwinCritic,
        critic_optimizer: OptimizerFactory,
        normalizer: ObservationNormalizer,
        gamma: float = 0.99,
        tau: float = 0.005,
        actor_every: int = 1,
        timer: SectionTimer | None = None,
    ) -> None:
        super().__init__()
        if not 0.0 <= gamma < 1.0:
            raise GempoError(f"gamma must be in [0, 1), got {gamma}")
        if not 0.0 < tau <= 1.0:
            raise GempoError(f"tau must be in (0, 1], got {tau}")
        if actor_every < 1:
            raise GempoError(f"actor_every must be >= 1, got {actor_every}")
        self.actor = actor
        self.critic = critic
        self.target_critic = copy.deepcopy(critic).requires_grad_(False)
        self.normalizer = normalizer
        self.gamma = gamma
        self.tau = tau
        self.actor_every = actor_every
        self.timer = timer or SectionTimer(enabled=False)
        self.optimizers = {
            "critic": critic_optimizer(critic.parameters()),
            **actor.actor_optimizers,
        }
        self.updates = 0
        self.capturable = False  # optimizers keep their step counts on the GPU (compiled steps)

    @torch.no_grad()
    def act(self, obs: Tensor, mode: ActMode) -> Tensor:
        """Raw observations ``(batch, obs_dim)`` -> actions ``(batch, act_dim)`` in ``[-1, 1]``
        under ``mode`` (``explore``, ``eval`` or ``eval_raw``)."""
        return self.actor.act(self.normalizer(obs), self.critic, mode)

    @torch.no_grad()
    def critic_target(self, batch: Transitions) -> Tensor:
        """``r + gamma * (1 - terminated) * (min_k Q'_k(s', a') + bonus)``, ``a' ~ pi(s')``:
        ``(batch,)``. Truncated transitions have ``terminated = 0`` and bootstrap."""
        next_obs = self.normalizer(batch.next_obs)
        next_actions, bonus = self.actor.target_actions(next_obs)
        next_q = self.target_critic.value(next_obs, next_actions) + bonus
        return batch.rewards + self.gamma * (1.0 - batch.terminated) * next_q

    def critic_loss(self, batch: Transitions) -> tuple[Tensor, Tensor, Tensor]:
        """The critic's loss, its values ``(2, batch)`` and the normalized observations."""
        obs = self.normalizer(batch.obs)
        q = self.critic(obs, batch.actions)
        return (q - self.critic_target(batch)).pow(2).mean(dim=1).sum(), q, obs

    def compile_hot_paths(self, mode: str) -> None:
        """``torch.compile`` the critic loss, the actor's hot paths (see
        :meth:`Actor.compile_hot_paths`) and every optimizer step; on a GPU the optimizers become
        ``capturable`` (their step counts stay on the device), so ``reduce-overhead`` can
        capture the steps as CUDA graphs too. Call it after the agent is on its device."""
        self.critic_loss = torch.compile(self.critic_loss, mode=mode)
        self.actor.compile_hot_paths(mode)
        self.capturable = next(self.critic.parameters()).is_cuda
        self.set_capturable()
        for optimizer in self.optimizers.values():
            optimizer.step = torch.compile(optimizer.step, mode=mode)

    def set_capturable(self) -> None:
        """Every optimizer group's ``capturable`` flag as this run needs it (a checkpoint made
        on another device or without compilation carries its own)."""
        for optimizer in self.optimizers.values():
            for group in optimizer.param_groups:
                group["capturable"] = self.capturable

    def update(self, batch: Transitions, update_actor: bool = True) -> dict[str, Tensor]:
        """One critic step (and an actor step every ``actor_every``, unless ``update_actor`` is
        false: the critic's warm-up); returns stats (detached scalar tensors, read only when
        logged)."""
        with self.timer.section("critic"):
            critic_loss, q, obs = self.critic_loss(batch)
            optimizer = self.optimizers["critic"]
            optimizer.zero_grad(set_to_none=True)
            critic_loss.backward()
            optimizer.step()
        stats = {"critic/loss": critic_loss.detach(), "critic/q_mean": q.detach().mean()}
        self.updates += 1
        if update_actor and self.updates % self.actor_every == 0:
            stats.update(self.actor.update(obs, self.critic, self.timer))
        with self.timer.section("target"), torch.no_grad():
            torch._foreach_lerp_(
                list(self.target_critic.parameters()), list(self.critic.parameters()), self.tau
            )
        return stats

    def checkpoint_state(self) -> dict:
        """Networks, target networks, normalizer, optimizers and the update count."""
        return {
            "model": self.state_dict(),
            "optimizers": {name: opt.state_dict() for name, opt in self.optimizers.items()},
            "updates": self.updates,
        }

    def load_checkpoint_state(self, state: dict) -> None:
        """Restore :meth:`checkpoint_state`."""
        self.load_state_dict(state["model"])
        for name, opt in self.optimizers.items():
            opt.load_state_dict(state["optimizers"][name])
        self.set_capturable()
        self.updates = state["updates"]


def resolve_device(name: str) -> torch.device:
    """``auto`` (a GPU when present, else the CPU), ``cpu``, ``cuda`` or ``cuda:N``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise GempoError(f"device={name}: expected auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise GempoError(f"device={name}: no CUDA GPU is available; use device=cpu or device=auto")
    return device


def build_agent(cfg: DictConfig, obs_dim: int, act_dim: int, device: torch.device) -> ActorCritic:
    """The actor (``cfg.agent.actor``), critic (``cfg.critic``) and optimizers, on ``device``.

    The actor and critic configs are Hydra ``_partial_`` targets completed here with the env's
    sizes. ``Module.to`` keeps the parameter objects, so the optimizers follow them to ``device``.
    """
    timer = SectionTimer(enabled=bool(cfg.get("profile", False)), device=device)
    actor = instantiate(cfg.agent.actor)(obs_dim=obs_dim, act_dim=act_dim)
    critic = instantiate(cfg.critic)(obs_dim=obs_dim, act_dim=act_dim)
    agent = ActorCritic(
        actor=actor,
        critic=critic,
        critic_optimizer=instantiate(cfg.critic_optimizer),
        normalizer=ObservationNormalizer(obs_dim, enabled=bool(cfg.env.normalize_obs)),
        gamma=cfg.gamma,
        tau=cfg.tau,
        actor_every=cfg.agent.actor_every,
        timer=timer,
    )
    agent = agent.to(device)
    if cfg.get("compile"):
        agent.compile_hot_paths(str(cfg.compile))
    return agent
