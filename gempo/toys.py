"""Two toy problems that show GeMPO learns, used by the tests and ``benchmarks/weights_toy.py``.

- :class:`ModesBandit2D`: a continuous 2-D bandit whose reward is a sum of Gaussian bumps of
  different heights; the base policy is ``N(0, I)`` (an untrained flow) and covers every mode;
  a good policy moves its mass onto the tallest one.
- :class:`MotifBandit`: short sequences over 4 letters; the reward is the best match of a known
  motif anywhere in the sequence; the base policy is uniform (an untrained masked denoiser).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytorch_lightning as pl
import torch
from torch import Tensor

from gempo.losses import GeMPOObjective, ReweightedLoss
from gempo.module import GeMPOModule, fit_steps
from gempo.nets import ConvDenoiser, MLPVelocityField
from gempo.policies import ContinuousFlowPolicy, GenerativePolicy, MaskedDiffusionPolicy
from gempo.weights import Normalization, WeightFunction


class ModesBandit2D:
    """Reward ``sum_k h_k exp(-|x - mu_k|^2 / (2 s^2))`` over four modes at ``(±c, ±c)``; the
    tallest (height 1) is at ``(c, c)``."""

    def __init__(self, spread: float = 1.5, width: float = 0.5) -> None:
        self.centers = (
            torch.tensor([[1, 1], [-1, 1], [1, -1], [-1, -1]], dtype=torch.float32) * spread
        )
        self.heights = torch.tensor([1.0, 0.7, 0.7, 0.4])
        self.width = width

    def __call__(self, cond: Tensor, x: Tensor) -> Tensor:
        """``x``: ``(batch, 2)`` -> rewards ``(batch,)``."""
        sq = torch.cdist(x, self.centers.to(x)).pow(2)
        return (self.heights.to(x) * torch.exp(-sq / (2 * self.width**2))).sum(-1)

    def best_mode_share(self, x: Tensor) -> float:
        """Share of samples closer to the tallest mode than ``2 * width``."""
        return (
            (torch.linalg.norm(x - self.centers[0].to(x), dim=-1) < 2 * self.width)
            .float()
            .mean()
            .item()
        )

    def base_policy(self, hidden: int = 64, steps: int = 10) -> ContinuousFlowPolicy:
        """An untrained flow: zero velocity, so its samples are the source ``N(0, I)``."""
        return ContinuousFlowPolicy(MLPVelocityField(2, hidden=hidden, depth=2), dim=2, steps=steps)

    @staticmethod
    def diversity(x: Tensor) -> float:
        """Mean pairwise Euclidean distance between samples."""
        return torch.pdist(x).mean().item()


class MotifBandit:
    """Reward: the largest fraction of ``motif`` matched at any position of the sequence."""

    def __init__(self, motif: tuple[int, ...] = (2, 0, 3, 0), length: int = 8, vocab_size: int = 4):
        self.motif = torch.tensor(motif)
        self.length = length
        self.vocab_size = vocab_size

    def __call__(self, cond: Tensor, x: Tensor) -> Tensor:
        """``x``: ``(batch, length)`` tokens -> rewards ``(batch,)`` in ``[0, 1]``."""
        windows = x.unfold(1, len(self.motif), 1)  # (batch, positions, motif_len)
        return (windows == self.motif.to(x.device)).float().mean(-1).amax(-1)

    def base_policy(self, channels: int = 32, steps: int = 8) -> MaskedDiffusionPolicy:
        """An untrained denoiser: zero logits, so the base policy is uniform over sequences."""
        denoiser = ConvDenoiser(self.vocab_size, channels=channels, dilations=(1, 2), time_dim=32)
        return MaskedDiffusionPolicy(denoiser, self.vocab_size, self.length, steps=steps)

    @staticmethod
    def diversity(x: Tensor) -> float:
        """Mean pairwise Hamming distance as a fraction of the length."""
        return (
            (x.unsqueeze(0) != x.unsqueeze(1)).float().mean().item()
            * x.shape[0]
            / max(x.shape[0] - 1, 1)
        )


Toy = ModesBandit2D | MotifBandit


@dataclass
class ToyResult:
    """Mean reward and diversity of the base policy and of the fine-tuned ``policy``."""

    base_reward: float
    final_reward: float
    base_diversity: float
    final_diversity: float
    policy: GenerativePolicy = field(compare=False, repr=False)


def evaluate(toy: Toy, policy: GenerativePolicy, num_samples: int = 1024) -> tuple[float, float]:
    """Mean reward and diversity of ``num_samples`` samples of ``policy``."""
    x = policy.sample(torch.zeros(num_samples, 0))
    return toy(torch.zeros(num_samples, 0), x).mean().item(), toy.diversity(x)


def run_toy(
    toy: Toy,
    weight: WeightFunction,
    steps: int = 150,
    group_size: int = 128,
    lr: float = 3e-3,
    normalization: Normalization = "zscore",
    loss: ReweightedLoss | None = None,
    seed: int = 0,
) -> ToyResult:
    """Fine-tune the toy's base policy with GeMPO for ``steps`` on-policy steps."""
    pl.seed_everything(seed, verbose=False)
    policy = toy.base_policy()
    base_reward, base_diversity = evaluate(toy, policy)
    module = GeMPOModule(
        policy=policy,
        reward=toy,
        objective=GeMPOObjective(weight, normalization=normalization, loss=loss),
        optimizer=lambda params: torch.optim.Adam(params, lr=lr),
        group_size=group_size,
    )
    fit_steps(module, steps)
    final_reward, final_diversity = evaluate(toy, module.policy)
    return ToyResult(base_reward, final_reward, base_diversity, final_diversity, module.policy)
