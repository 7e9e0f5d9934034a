"""The LightningModule of GeMPO: sample, score, weight, match.

One GeMPO step, the same for every pipeline: for each context the frozen **proposal** policy
(a copy of the policy refreshed every ``refresh_every`` optimizer steps; 1 = on-policy) draws
``group_size`` candidates (:meth:`GeMPOModule.propose`), a reward or a critic scores them,
and with the weights that batch defines the target measure ``mu* = pi_old * g(A)``
(:meth:`GeMPOModule.draw`); the policy then fits it by reweighted flow matching
(:meth:`GeMPOModule.gempo_loss`, then :meth:`GeMPOModule.after_update` after the optimizer
step).

:class:`GeMPOModule` drives that step with Lightning's automatic optimisation on a stream of
context batches ``(groups, cond_dim)`` (``cond_dim = 0`` for an unconditional policy; see
:class:`ContextStream`), fitting each scored batch with ``updates_per_batch`` steps (the DNA
pipeline). An online loop that owns its schedule (the control actor) specialises it, overriding
:meth:`~GeMPOModule.propose` and calling the same step with its own optimizer.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import IterableDataset

from gempo.errors import GempoError
from gempo.groups import GroupBatch, draw_groups
from gempo.losses import GeMPOObjective, GeMPOStep
from gempo.nets import freeze
from gempo.policies import GenerativePolicy
from gempo.weights import check_finite_rewards

Reward = Callable[[Tensor, Tensor], Tensor]
"""``(cond (batch, cond_dim), x (batch, ...)) -> rewards (batch,)``."""

OptimizerFactory = Callable[[Iterable[torch.nn.Parameter] | Iterable[dict]], torch.optim.Optimizer]
"""Builds an optimizer from parameters or parameter groups (a Hydra ``_partial_`` target)."""


class ContextStream(IterableDataset):
    """An endless stream of context batches ``(groups, cond_dim)`` for an unconditional policy
    (``cond_dim = 0``) or, with ``sampler``, contexts drawn by ``sampler(groups)``."""

    def __init__(
        self, groups: int, cond_dim: int = 0, sampler: Callable[[int], Tensor] | None = None
    ) -> None:
        if groups < 1:
            raise GempoError(f"groups (contexts per step) must be >= 1, got {groups}")
        self.groups = groups
        self.cond_dim = cond_dim
        self.sampler = sampler

    def __iter__(self) -> Iterator[Tensor]:
        while True:
            if self.sampler is None:
                yield torch.zeros(self.groups, self.cond_dim)
            else:
                yield self.sampler(self.groups)


class DataReplay:
    """Uniform minibatches of fixed samples, e.g. the data a policy was pretrained on, for the
    objective's data anchor. ``x``: ``(num, ...)``; ``cond``: ``(num, cond_dim)`` (``None``: an
    unconditional policy, ``cond_dim = 0``). Draws use the global torch RNG, so a resumed run
    replays the same batches."""

    def __init__(self, x: Tensor, cond: Tensor | None = None, batch_size: int = 64) -> None:
        if x.shape[0] < 1:
            raise GempoError("the data to replay is empty")
        if batch_size < 1:
            raise GempoError(f"reg.data_batch must be >= 1, got {batch_size}")
        if cond is not None and cond.shape[0] != x.shape[0]:
            raise GempoError(f"data replay: {cond.shape[0]} conditions for {x.shape[0]} samples")
        self.x = x
        self.cond = cond if cond is not None else torch.zeros(x.shape[0], 0)
        self.batch_size = batch_size

    def draw(self, device: torch.device) -> tuple[Tensor, Tensor]:
        """``(cond (batch_size, cond_dim), x (batch_size, ...))`` on ``device``."""
        index = torch.randint(self.x.shape[0], (self.batch_size,))
        return self.cond[index].to(device), self.x[index].to(device)


class AnchorController:
    """Adapts the data anchor's weight ``alpha`` so that the behaviour samples stay about
    ``target`` close to the data (the adaptive KL coefficient of PPO, applied to the anchor):
    after each scored batch, ``alpha <- clip(alpha * exp(rate * (target - closeness)), low,
    high)``, where ``closeness`` is the module's ``closeness(x)`` of the batch (higher = closer
    to the data). The weight grows while the samples drift further than the target allows and
    decays while they are closer, so the reward is free to climb as long as the constraint
    holds. ``alpha`` starts at ``start`` (the configured weight) and is this object's state
    (:meth:`state_dict`), checkpointed by the module; the objective's own weight stays what it
    was configured to be.
    """

    def __init__(
        self,
        target: float,
        start: float,
        rate: float = 5.0,
        low: float = 1e-3,
        high: float = 1.0,
    ) -> None:
        if rate <= 0:
            raise GempoError(f"reg.data_rate must be > 0, got {rate}")
        if not 0 < low <= high:
            raise GempoError(f"anchor bounds must satisfy 0 < low <= high, got {low}, {high}")
        if start <= 0:
            raise GempoError(f"the anchor's starting weight reg.data must be > 0, got {start}")
        self.target = target
        self.rate = rate
        self.low = low
        self.high = high
        self.alpha = float(start)

    def update(self, closeness: float) -> float:
        """Adapt ``alpha`` after a behaviour batch with this ``closeness``; returns it."""
        step = math.exp(self.rate * (self.target - closeness))
        self.alpha = min(self.high, max(self.low, self.alpha * step))
        return self.alpha

    def state_dict(self) -> dict[str, float]:
        return {"alpha": self.alpha}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.alpha = float(state["alpha"])


class BestFeasibleSnapshot:
    """Model selection on training signals: keeps a copy of the behaviour policy that drew the
    best batch so far among the *feasible* ones, those whose ``closeness`` is at least
    ``min_closeness``; best = the highest median reward. An online run under a constraint
    oscillates around it (reward climbs, the constraint pulls back), so where it happens to end
    is partly luck; the snapshot is the best state it passed through that met the constraint.
    Only the batch's reward and closeness are used (no held-out evaluation)."""

    def __init__(self, min_closeness: float) -> None:
        self.min_closeness = min_closeness
        self.reward = -math.inf
        self.closeness = math.nan
        self.step: int | None = None
        self.state: dict[str, Tensor] | None = None

    def observe(
        self, policy: torch.nn.Module, rewards: Tensor, closeness: float, step: int
    ) -> None:
        """``policy`` drew a batch with ``rewards`` (any shape) and ``closeness`` at ``step``."""
        reward = float(rewards.median())
        if closeness >= self.min_closeness and reward > self.reward:
            self.reward, self.closeness, self.step = reward, closeness, step
            self.state = {k: v.detach().cpu().clone() for k, v in policy.state_dict().items()}

    def state_dict(self) -> dict[str, Any]:
        return {
            "reward": self.reward,
            "closeness": self.closeness,
            "step": self.step,
            "state": self.state,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.reward, self.closeness = state["reward"], state["closeness"]
        self.step, self.state = state["step"], state["state"]

    def summary(self) -> dict[str, Any]:
        """What was selected, for a run's summary (``step`` None: no batch was feasible)."""
        return {
            "min_closeness": self.min_closeness,
            "step": self.step,
            "batch_reward_median": self.reward if self.step is not None else None,
            "batch_closeness": self.closeness if self.step is not None else None,
        }


class GeMPOModule(pl.LightningModule):
    """Online GeMPO training of a :class:`GenerativePolicy` against a reward.

    Args:
        policy: the trainable policy (its initial weights are the starting point).
        reward: scores candidates; an ``nn.Module`` reward is frozen and moved with the module
            (``None``: the owner passes its own ``score`` to :meth:`draw`, e.g. a critic).
        objective: normalization, weight function, reweighted loss and regularization, and
            the learned temperature's learning rate.
        optimizer: builds the optimizer from parameter groups (a Hydra ``_partial_``): the
            policy's, and the learned temperature's at ``objective.temperature_lr``.
        group_size: samples per context, ``N``.
        refresh_every: optimizer steps between refreshes of the proposal policy.
        reference: a frozen policy to regularize toward (e.g. the pretrained model); used when
            ``objective.reg_alpha > 0``.
        ema_decay: keep an exponential moving average of the policy (``None`` for none); the
            average is what :meth:`sampling_policy` returns.
        updates_per_batch: optimizer steps taken on each sampled and scored batch (sampling is
            the expensive part; >1 fits each target measure more closely per oracle call).
        data: replayed data samples for the objective's data anchor (used when its weight,
            :meth:`data_weight`, is > 0).
        closeness: behaviour samples ``(batch, ...)`` -> a number, higher = closer to the data
            (e.g. a correlation of sequence statistics to a reference set); computed once per
            scored batch, logged as ``train/<closeness_key>``, and read by ``anchor`` and
            ``select``.
        anchor: adapts the data anchor's weight after each scored batch (``None``: it stays
            ``objective.data_alpha``); needs ``data`` and ``closeness``.
        select: keeps the best feasible behaviour policy, which :meth:`sampling_policy` then
            returns; needs ``closeness``.
    """

    BATCH_KEY = "gempo_behaviour_batch"
    RNG_KEY = "gempo_rng_state"
    CUDA_RNG_KEY = "gempo_cuda_rng_state"
    ANCHOR_KEY = "gempo_data_alpha"  # the adaptive anchor's weight (the name older runs wrote)
    SELECT_KEY = "gempo_selected"

    def __init__(
        self,
        policy: GenerativePolicy,
        reward: Reward | None,
        objective: GeMPOObjective,
        optimizer: OptimizerFactory,
        group_size: int = 16,
        refresh_every: int = 1,
        reference: GenerativePolicy | None = None,
        ema_decay: float | None = None,
        updates_per_batch: int = 1,
        data: DataReplay | None = None,
        closeness: Callable[[Tensor], float] | None = None,
        closeness_key: str = "closeness",
        anchor: AnchorController | None = None,
        select: BestFeasibleSnapshot | None = None,
    ) -> None:
        super().__init__()
        if updates_per_batch < 1:
            raise GempoError(f"updates_per_batch must be >= 1, got {updates_per_batch}")
        if group_size < 1:
            raise GempoError(f"group_size must be >= 1, got {group_size}")
        if refresh_every < 1:
            raise GempoError(f"refresh_every must be >= 1, got {refresh_every}")
        if ema_decay is not None and not 0.0 < ema_decay < 1.0:
            raise GempoError(f"ema_decay must be in (0, 1) or null, got {ema_decay}")
        if anchor is not None and data is None:
            raise GempoError("an adaptive data anchor needs data to replay and reg.data > 0")
        if closeness is None and (anchor is not None or select is not None):
            raise GempoError("an adaptive anchor or a feasible-snapshot selection needs closeness")
        self.policy = policy
        self.proposal = freeze(copy.deepcopy(policy))
        self.reward = freeze(reward) if isinstance(reward, torch.nn.Module) else reward
        self.objective = objective
        self.optimizer_factory = optimizer
        self.group_size = group_size
        self.refresh_every = refresh_every
        self.reference = freeze(reference) if reference is not None else None
        self.ema = (
            AveragedModel(policy, multi_avg_fn=get_ema_multi_avg_fn(ema_decay), use_buffers=True)
            if ema_decay is not None
            else None
        )
        if self.ema is not None:
            freeze(self.ema)
        self.updates_per_batch = updates_per_batch
        self.data = data
        self.closeness = closeness
        self.closeness_key = closeness_key
        self.anchor = anchor
        self.select = select
        self.optimizer_steps = 0
        """Optimizer steps taken (they time the proposal's refresh); a Python number, so that
        counting never waits for the device, checkpointed as the module's extra state."""
        self.register_buffer("samples_scored", torch.zeros((), dtype=torch.long))
        self.batch: tuple[Tensor, Tensor, Tensor] | None = None
        """The scored batch being fitted: ``cond``, ``x`` and rewards ``(groups, N)``."""
        self._restored_rng: tuple[Tensor | None, list[Tensor] | None] | None = None

    def get_extra_state(self) -> dict[str, int]:
        return {"optimizer_steps": self.optimizer_steps}

    def set_extra_state(self, state: dict[str, int]) -> None:
        self.optimizer_steps = int(state["optimizer_steps"])

    def sampling_policy(self) -> GenerativePolicy:
        """The policy to draw final samples from: the ``select`` snapshot when one was taken,
        else :meth:`final_policy`."""
        if self.select is not None and self.select.state is not None:
            selected = copy.deepcopy(self.policy)
            selected.load_state_dict(self.select.state)
            return freeze(selected)
        return self.final_policy()

    def final_policy(self) -> GenerativePolicy:
        """The model at the end of training, with no selection: the EMA when kept, else the
        policy."""
        return self.ema.module if self.ema is not None else self.policy

    def score(self, cond: Tensor, x: Tensor) -> Tensor:
        """Rewards ``(batch,)`` of samples ``x`` under contexts ``cond``."""
        if self.reward is None:
            raise GempoError("this GeMPOModule has no reward: pass score= to draw()")
        with torch.no_grad():
            return check_finite_rewards(self.reward(cond, x).float())

    def propose(self, cond: Tensor) -> Tensor:
        """One candidate per row of ``cond`` ``(batch, cond_dim)`` from the proposal policy."""
        return self.proposal.sample(cond)

    def draw(
        self, contexts: Tensor, score: Callable[[Tensor, Tensor], Tensor] | None = None
    ) -> GroupBatch:
        """The sampling half of a GeMPO step: ``group_size`` candidates per context
        ``(G, cond_dim)`` from :meth:`propose`, scored by ``score`` (default :meth:`score`)."""
        return draw_groups(contexts, self.group_size, self.propose, score or self.score)

    def gempo_loss(self, cond: Tensor, x: Tensor, rewards: Tensor) -> GeMPOStep:
        """The fitting half: weights of ``rewards`` ``(G, N)`` and the reweighted loss of the
        policy on ``x`` ``(G * N, ...)`` under ``cond`` ``(G * N, cond_dim)``, with the reference
        and the data anchor (at :meth:`data_weight`) when the objective uses them."""
        weight = self.data_weight()
        data = self.data.draw(x.device) if self.data is not None and weight > 0 else None
        return self.objective(self.policy, x, cond, rewards, self.reference, data, weight)

    def after_update(self) -> None:
        """After each optimizer step: count it, update the EMA, refresh the proposal policy
        every ``refresh_every`` steps."""
        self.optimizer_steps += 1
        if self.ema is not None:
            self.ema.update_parameters(self.policy)
        if self.optimizer_steps % self.refresh_every == 0:
            self.proposal.load_state_dict(self.policy.state_dict())

    def behaviour_batch(self, contexts: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The batch to fit this step: drawn and scored anew every ``updates_per_batch`` steps,
        else the current one."""
        if self.batch is None or self.optimizer_steps % self.updates_per_batch == 0:
            drawn = self.draw(contexts)
            self.samples_scored += drawn.x.shape[0] * self.trainer.world_size  # every rank scores
            self.batch = (drawn.cond, drawn.x, drawn.rewards)
            if self.closeness is not None:
                self.track_closeness(drawn.x, drawn.rewards)
        return self.batch

    def track_closeness(self, x: Tensor, rewards: Tensor) -> None:
        """Log the new scored batch's closeness, adapt the anchor and offer the proposal policy
        that drew it to the selection."""
        closeness = float(self.across_ranks(torch.tensor(float(self.closeness(x)))).mean())
        self.log(f"train/{self.closeness_key}", closeness)
        if self.anchor is not None:
            self.anchor.update(closeness)
        if self.select is not None:
            self.select.observe(
                self.proposal, self.across_ranks(rewards), closeness, self.optimizer_steps
            )

    def data_weight(self) -> float:
        """The data anchor's weight now: the adaptive anchor's, else the objective's."""
        return self.anchor.alpha if self.anchor is not None else self.objective.data_alpha

    def across_ranks(self, value: Tensor) -> Tensor:
        """``value`` of every rank stacked, ``(world, ...)``, under data-parallel training (each
        rank draws and scores its own groups); ``value`` itself on one device. Decisions taken
        from it (anchor weight, selection) are then the same on every rank."""
        if self.trainer.world_size == 1:
            return value
        return self.all_gather(value.to(self.device)).cpu()

    def training_step(self, contexts: Tensor, batch_idx: int) -> Tensor:
        cond, x, rewards = self.behaviour_batch(contexts)
        step = self.gempo_loss(cond, x, rewards)
        self.log("train/loss", step.loss, prog_bar=True)
        self.log_dict({f"train/{k}": v for k, v in step.stats.items()})
        self.log("train/reward", step.stats["reward_mean"], prog_bar=True, logger=False)
        self.log("train/reward_calls", self.samples_scored.float())
        if self.anchor is not None:
            self.log("train/data_alpha", self.data_weight())
        return step.loss

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        """The optimizer step, then :meth:`after_update`, so that every hook and callback after
        the step (checkpointing included) sees it done."""
        super().optimizer_step(*args, **kwargs)
        self.after_update()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """The batch being fitted, the adaptive anchor's weight, the selected snapshot and the
        RNG states (CPU, and GPU when in use): sampling, path times
        and data replay all draw from them, so a resumed run repeats the rest."""
        checkpoint[self.BATCH_KEY] = self.batch
        if self.anchor is not None:
            checkpoint[self.ANCHOR_KEY] = self.anchor.state_dict()["alpha"]
        if self.select is not None:
            checkpoint[self.SELECT_KEY] = self.select.state_dict()
        checkpoint[self.RNG_KEY] = self.across_ranks(torch.get_rng_state())
        if torch.cuda.is_initialized():
            checkpoint[self.CUDA_RNG_KEY] = self.across_ranks(torch.cuda.get_rng_state())

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.batch = checkpoint.get(self.BATCH_KEY)
        if self.anchor is not None and self.ANCHOR_KEY in checkpoint:
            self.anchor.load_state_dict({"alpha": checkpoint[self.ANCHOR_KEY]})
        if self.select is not None and self.SELECT_KEY in checkpoint:
            self.select.load_state_dict(checkpoint[self.SELECT_KEY])
        self._restored_rng = (checkpoint.get(self.RNG_KEY), checkpoint.get(self.CUDA_RNG_KEY))

    def on_train_start(self) -> None:
        """Restore a loaded checkpoint's RNG states, this rank's (after Lightning's own
        seeding); in a fresh data-parallel run, reseed every rank but rank 0 with the seed plus
        its rank, so that the ranks draw different groups (rank 0 draws what one process would)."""
        if self._restored_rng is None:
            if self.global_rank > 0:
                torch.manual_seed(torch.initial_seed() + self.global_rank)
            return
        cpu, cuda = (self.rank_state(state) for state in self._restored_rng)
        if cpu is not None:
            torch.set_rng_state(cpu)
        if cuda is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state(cuda, self.device)
        self._restored_rng = None

    def rank_state(self, state: Tensor | None) -> Tensor | None:
        """This rank's row of an RNG state saved by :meth:`across_ranks` (a run resumed on
        fewer or more ranks takes them in turn)."""
        if state is None or state.dim() == 1:
            return None if state is None else state.cpu()
        return state[self.global_rank % state.shape[0]].cpu()

    def configure_gradient_clipping(
        self,
        optimizer: torch.optim.Optimizer,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        """``trainer.gradient_clip_val`` clips the policy's gradients only: a learned
        temperature (its own parameter group) keeps its own gradient."""
        if not gradient_clip_val:
            return
        if gradient_clip_algorithm == "value":
            torch.nn.utils.clip_grad_value_(self.policy.parameters(), gradient_clip_val)
        else:
            torch.nn.utils.clip_grad_norm_(self.policy.parameters(), gradient_clip_val)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        groups: list[dict[str, Any]] = [{"params": list(self.policy.parameters())}]
        temperature = self.objective.temperature_parameters()
        if temperature:
            groups.append({"params": temperature, "lr": self.objective.temperature_lr})
        return self.optimizer_factory(groups)


def fit_steps(module: GeMPOModule, steps: int, groups: int = 1, accelerator: str = "cpu") -> None:
    """Run ``steps`` GeMPO steps of ``module`` on ``groups`` contexts per step, with no logger,
    checkpoint or progress bar (toys, tests, notebooks)."""
    trainer = pl.Trainer(
        max_steps=steps,
        accelerator=accelerator,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, torch.utils.data.DataLoader(ContextStream(groups=groups), batch_size=None))
