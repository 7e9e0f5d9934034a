"""The training reward's motif-variety term (``repeats``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dna.metrics import max_kmer_copies
from dna.rewards import OracleReward, RepeatPenalty, cell_reward
from dna.sequences import encode
from gempo.errors import GempoError


class Constant(torch.nn.Module):
    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return torch.tensor([[2.0, 0.0, 0.0]]).expand(len(tokens), 3)


def random_sequences(count: int, length: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return ["".join(rng.choice(list("ACGT"), length)) for _ in range(count)]


def test_repeat_penalty_charges_copies_beyond_what_the_data_holds() -> None:
    data = random_sequences(300, 64, seed=0)
    penalty = RepeatPenalty.from_data(data, weight=0.5, k=8, quantile=1.0)
    # allowed: the most copies of one 8-mer in any data sequence (random 64-mers: 1 or 2)
    assert penalty.allowed == float(max_kmer_copies(encode(data), 8).max())
    motif = "TGTAAACA"
    filler = random_sequences(1, 64, seed=1)[0]
    planted = {copies: (motif * copies + filler)[:64] for copies in (1, 4, 6)}
    tokens = encode(list(planted.values()))
    expected = [0.5 * max(0.0, c - penalty.allowed) for c in max_kmer_copies(tokens, 8).tolist()]
    torch.testing.assert_close(penalty(tokens), torch.tensor(expected))
    assert penalty(tokens)[2] > penalty(tokens)[1] > 0  # more copies, more penalty

    trained = cell_reward(Constant(), {"target": "hepg2", "off_target_weight": 0.0}, penalty)
    reported = cell_reward(Constant(), {"target": "hepg2", "off_target_weight": 0.0})
    cond = torch.zeros(3, 0)
    torch.testing.assert_close(trained(cond, tokens), 2.0 - penalty(tokens))
    torch.testing.assert_close(reported(cond, tokens), torch.full((3,), 2.0))
    # the objective that evaluation reports never carries the term
    activities = trained.activities(tokens)
    torch.testing.assert_close(trained.from_activities(activities), torch.full((3,), 2.0))


def test_repeat_penalty_rejects_bad_values() -> None:
    with pytest.raises(GempoError, match="repeats.weight must be >= 0, got -1"):
        RepeatPenalty(weight=-1.0, allowed=3.0)
    with pytest.raises(GempoError, match=r"repeats.quantile must be in \(0, 1\], got 0.0"):
        RepeatPenalty.from_data(["ACGTACGTAC"], weight=1.0, quantile=0.0)
    assert isinstance(cell_reward(Constant(), {"target": "k562"}), OracleReward)
