"""Rewards for fine-tuning: a Pred-Activity oracle's prediction for one cell type, or a
specificity score (the target cell type up, the other two down).

The objective is the ``cell=`` config group: ``hepg2`` (default), ``k562``, ``sknsh``, or
``specificity`` (``target - off_target_weight * mean(others)``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from dna.data import ACTIVITY_COLUMNS
from gempo.errors import GempoError
from gempo.nets import module_device


class OracleReward(nn.Module):
    """``R(x) = oracle(x)[target] - off_target_weight * mean_{c != target} oracle(x)[c]``.

    The GeMPO reward signature: ``(cond (batch, 0), tokens (batch, length)) -> (batch,)``. The
    oracle maps tokens ``(batch, length)`` to activities ``(batch, 3)`` in
    ``(hepg2, k562, sknsh)`` order. ``off_target_weight = 0`` is plain activity in ``target``.
    ``batch_size`` bounds the rows scored per oracle call (memory).
    """

    def __init__(
        self,
        oracle: nn.Module,
        target: str = "hepg2",
        off_target_weight: float = 0.0,
        batch_size: int = 1024,
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
        return self.from_activities(self.activities(tokens))


def cell_reward(oracle: nn.Module, cell: Mapping[str, Any]) -> OracleReward:
    """The ``cell=`` objective (a config mapping: ``target``, ``off_target_weight``) under
    ``oracle``: what fine-tuning maximises with the fine-tune oracle, and what evaluation
    reports under the eval oracle."""
    return OracleReward(oracle, **cell)
