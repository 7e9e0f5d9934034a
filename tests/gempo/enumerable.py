"""A denoiser whose conditionals are exactly those of a known joint distribution over a tiny
sequence space, so likelihoods and samples can be checked by enumeration."""

from __future__ import annotations

import itertools

import torch
from torch import Tensor


class ExactConditionalDenoiser(torch.nn.Module):
    """``p(x_l | revealed tokens of x_t)`` computed from the joint ``probs`` over all
    ``vocab_size ** length`` sequences (the order of ``itertools.product``)."""

    def __init__(self, probs: Tensor, vocab_size: int, length: int) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.sequences = torch.tensor(list(itertools.product(range(vocab_size), repeat=length)))
        self.probs = probs
        self.one_hot = torch.nn.functional.one_hot(self.sequences, vocab_size).double()

    def forward(self, x_t: Tensor, t: Tensor) -> Tensor:
        revealed = x_t != self.vocab_size
        agrees = (self.sequences[None] == x_t[:, None]) | ~revealed[:, None]
        mass = agrees.all(-1).double() * self.probs[None]  # (batch, sequences)
        marginals = torch.einsum("bs,slv->blv", mass, self.one_hot)
        return torch.log(marginals.clamp_min(1e-300)).float()

    def index(self, x: Tensor) -> Tensor:
        """Row of each sequence of ``x`` ``(batch, length)`` in the enumeration."""
        powers = self.vocab_size ** torch.arange(x.shape[1] - 1, -1, -1)
        return (x * powers).sum(-1)


def random_joint(vocab_size: int, length: int, seed: int = 0) -> Tensor:
    generator = torch.Generator().manual_seed(seed)
    logits = 2.0 * torch.randn(vocab_size**length, generator=generator, dtype=torch.float64)
    return torch.softmax(logits, dim=0)
