"""Rewards for fine-tuning: a Pred-Activity oracle's prediction for one cell type, or a
specificity score (the target cell type up, the other two down).

The objective is the ``cell=`` config group: ``hepg2`` (default), ``k562``, ``sknsh``, or
``specificity`` (``target - off_target_weight * mean(others)``). Training may subtract a
:class:`RepeatPenalty` (``repeats.weight > 0``): reported scores are always the objective alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from dna.data import ACTIVITY_COLUMNS
from dna.metrics import max_kmer_copies
from dna.sequences import encode
from gempo.errors import GempoError
from gempo.nets import module_device


class RepeatPenalty(nn.Module):
    """``weight * max(0, copies_k(x) - allowed)``: a motif-variety term that stops a reward from
    paying for one k-mer planted over and over. ``copies_k``: the most copies of any one k-mer
    (either strand) within the sequence (:func:`dna.metrics.max_kmer_copies`); ``allowed``: as
    many as natural sequences hold (:meth:`from_data`)."""

    def __init__(self, weight: float, allowed: float, k: int = 8) -> None:
        super().__init__()
        if weight < 0:
            raise GempoError(f"repeats.weight must be >= 0, got {weight}")
        if k < 1:
            raise GempoError(f"repeats.k must be >= 1, got {k}")
        self.weight, self.allowed, self.k = float(weight), float(allowed), int(k)

    @classmethod
    def from_data(
        cls, sequences: Sequence[str], weight: float, k: int = 8, quantile: float = 0.999
    ) -> RepeatPenalty:
        """``allowed``: the ``quantile`` of ``copies_k`` over the data ``sequences`` (training's
        half of the data: no oracle, no truth)."""
        if not 0.0 < quantile <= 1.0:
            raise GempoError(f"repeats.quantile must be in (0, 1], got {quantile}")
        if not len(sequences):
            raise GempoError("repeats: no data sequences to take the allowed copies from")
        copies = torch.cat(
            [
                max_kmer_copies(encode(sequences[i : i + 4096]), k)
                for i in range(0, len(sequences), 4096)
            ]
        )
        return cls(weight, float(np.quantile(copies.numpy(), quantile)), k)

    def forward(self, tokens: Tensor) -> Tensor:
        """Tokens ``(batch, length)`` -> penalties ``(batch,)`` (0 up to ``allowed`` copies)."""
        copies = max_kmer_copies(tokens, self.k).float()
        return self.weight * (copies - self.allowed).clamp(min=0.0)

    def extra_repr(self) -> str:
        return f"weight={self.weight}, allowed={self.allowed}, k={self.k}"


class OracleReward(nn.Module):
    """``R(x) = oracle(x)[target] - off_target_weight * mean_{c != target} oracle(x)[c]``.

    The GeMPO reward signature: ``(cond (batch, 0), tokens (batch, length)) -> (batch,)``. The
    oracle maps tokens ``(batch, length)`` to activities ``(batch, 3)`` in
    ``(hepg2, k562, sknsh)`` order. ``off_target_weight = 0`` is plain activity in ``target``.
    ``batch_size`` bounds the rows scored per oracle call (memory). ``repeats``: a
    :class:`RepeatPenalty` subtracted in :meth:`forward` (the training reward), never in
    :meth:`from_activities` (the objective that evaluation reports).
    """

    def __init__(
        self,
        oracle: nn.Module,
        target: str = "hepg2",
        off_target_weight: float = 0.0,
        batch_size: int = 1024,
        repeats: RepeatPenalty | None = None,
    ) -> None:
        super().__init__()
        if target not in ACTIVITY_COLUMNS:
            raise GempoError(
                f"cell.target: unknown cell type {target!r}; expected one of "
                f"{', '.join(ACTIVITY_COLUMNS)}"
            )
        if off_target_weight < 0:
            raise GempoError(f"cell.off_target_weight must be >= 0, got {off_target_weight}")
        if batch_size < 1:
            raise GempoError(f"reward batch_size must be >= 1, got {batch_size}")
        self.oracle = oracle
        self.target = target
        self.target_index = ACTIVITY_COLUMNS.index(target)
        self.off_target_weight = float(off_target_weight)
        self.batch_size = batch_size
        self.repeats = repeats

    @torch.no_grad()
    def activities(self, tokens: Tensor) -> Tensor:
        """The oracle's predictions ``(batch, 3)`` for tokens ``(batch, length)``, computed on
        the oracle's device and returned on the tokens' device."""
        device = module_device(self.oracle)
        parts = [
            self.oracle(tokens[i : i + self.batch_size].to(device)).float().to(tokens.device)
            for i in range(0, len(tokens), self.batch_size)
        ]
        return torch.cat(parts) if parts else torch.zeros(0, len(ACTIVITY_COLUMNS))

    def from_activities(self, activities: Tensor) -> Tensor:
        """Rewards ``(batch,)`` from activities ``(batch, 3)`` (also for ground truth)."""
        reward = activities[:, self.target_index]
        if self.off_target_weight:
            others = [i for i in range(activities.shape[1]) if i != self.target_index]
            reward = reward - self.off_target_weight * activities[:, others].mean(dim=1)
        return reward

    def forward(self, cond: Tensor, tokens: Tensor) -> Tensor:
        """``cond`` ``(batch, 0)`` (unused), tokens ``(batch, length)`` -> rewards ``(batch,)``."""
        reward = self.from_activities(self.activities(tokens))
        if self.repeats is not None:
            reward = reward - self.repeats(tokens).to(reward.device)
        return reward


def cell_reward(
    oracle: nn.Module, cell: Mapping[str, Any], repeats: RepeatPenalty | None = None
) -> OracleReward:
    """The ``cell=`` objective (a config mapping: ``target``, ``off_target_weight``) under
    ``oracle``: what fine-tuning maximises with the fine-tune oracle (less ``repeats``, when
    given), and what evaluation reports under the eval oracle."""
    return OracleReward(oracle, **cell, repeats=repeats)
