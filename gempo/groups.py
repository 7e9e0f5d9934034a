"""The sampling half of a GeMPO step, shared by both sides: per context, ``N`` candidates drawn
from a proposal and scored, kept group by group for the per-group weights.

DNA draws from the behaviour policy and scores with an oracle (``gempo.module``); control draws
from a frozen proposal plus noise and scores with the critic (``control.actors``). The fitting
half is :class:`gempo.losses.GeMPOObjective`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from einops import rearrange, repeat
from torch import Tensor


@dataclass
class GroupBatch:
    """Candidates and their scores: ``cond`` ``(G * N, cond_dim)`` (each context repeated
    ``N`` times, group by group), ``x`` ``(G * N, ...)`` and ``rewards`` ``(G, N)``."""

    cond: Tensor
    x: Tensor
    rewards: Tensor


def draw_groups(
    contexts: Tensor,
    group_size: int,
    propose: Callable[[Tensor], Tensor],
    score: Callable[[Tensor, Tensor], Tensor],
) -> GroupBatch:
    """``group_size`` candidates per row of ``contexts`` ``(G, cond_dim)``: ``propose(cond)``
    draws one per row of the repeated contexts, ``score(cond, x)`` gives ``(G * N,)``."""
    cond = repeat(contexts, "g c -> (g n) c", n=group_size)
    x = propose(cond)
    rewards = rearrange(score(cond, x), "(g n) -> g n", n=group_size)
    return GroupBatch(cond, x, rewards)
