"""The DNA fine-tuning run's set-up: config checks, the pretrained generator and the oracles,
the data anchor's sequences and the GeMPO module (:class:`DNAGeMPOModule`) built from config."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import Tensor

from dna.data import ACTIVITY_COLUMNS, TOP_FRACTION, HalfSplit, top_fraction_reference
from dna.metrics import count_pearson, kmer_counts, mean_pairwise_hamming
from dna.model import SequenceGenerator, check_architecture, load_generator, record_generator
from dna.rewards import OracleReward, RepeatPenalty
from dna.sequences import encode
from gempo.errors import GempoError
from gempo.losses import GeMPOObjective
from gempo.module import AnchorController, BestFeasibleSnapshot, DataReplay, GeMPOModule
from gempo.runs import check_minimums, config_number


class DNAGeMPOModule(GeMPOModule):
    """:class:`~gempo.module.GeMPOModule` plus the DNA run's bookkeeping.

    - logs ``train/diversity`` (mean pairwise Hamming distance of each behaviour batch, as a
      fraction of the length); the core logs ``train/reward_calls`` (oracle calls so far) and,
      with :func:`kmer3_closeness` as its ``closeness``, ``train/kmer3_corr`` (the drift away
      from natural sequence statistics);
    - saves ``checkpoint_path`` every ``checkpoint_every`` steps and at the last step (the core
      has already updated the EMA and refreshed the behaviour policy in ``optimizer_step``, and
      adds the RNG states), with the generator's constructor arguments, so a resumed run
      continues exactly as an uninterrupted one would.
    """

    def __init__(
        self,
        *args: Any,
        checkpoint_path: Path | None = None,
        checkpoint_every: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        if checkpoint_every < 0:
            raise GempoError(f"checkpoint_every must be >= 0, got {checkpoint_every}")
        self.checkpoint_path = checkpoint_path
        self.checkpoint_every = checkpoint_every

    def score(self, cond: Tensor, x: Tensor) -> Tensor:
        rewards = super().score(cond, x)
        self.log("train/diversity", mean_pairwise_hamming(x))
        return rewards

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.checkpoint_path is None or not self.checkpoint_every:
            return
        last = self.trainer.max_steps > 0 and self.global_step >= self.trainer.max_steps
        if last or self.global_step % self.checkpoint_every == 0:
            self.trainer.save_checkpoint(self.checkpoint_path, weights_only=False)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        record_generator(checkpoint, self.policy)


def validate_finetune_config(cfg: DictConfig) -> None:
    """One-line errors for bad values, before anything heavy is built."""
    minimums = {
        "groups": 1,
        "group_size": 1,
        "trainer.max_steps": 1,
        "final.num_samples": 1,
        "final.batch_size": 1,
        "checkpoint_every": 0,
        "log_every": 1,
        "objective.loss_times": 1,
        "updates_per_batch": 1,
        "repeats.k": 1,
    }
    check_minimums(cfg, minimums)
    if cfg.objective.normalization == "zscore" and int(cfg.group_size) < 2:
        raise GempoError("objective.normalization=zscore needs group_size >= 2")
    if not 0.0 < config_number(cfg, "repeats.quantile") <= 1.0:
        raise GempoError(f"repeats.quantile must be in (0, 1], got {cfg.repeats.quantile}")
    for key in ("reg.alpha", "reg.data", "repeats.weight"):
        if config_number(cfg, key) < 0:
            raise GempoError(f"{key} must be >= 0, got {OmegaConf.select(cfg, key)}")
    data = config_number(cfg, "reg.data")
    if cfg.reg.data_target is not None and not data > 0:
        raise GempoError(
            f"reg.data_target={cfg.reg.data_target} adapts the data anchor's weight upward "
            f"from reg.data, which must be > 0, got {cfg.reg.data} (no anchor at all: "
            "reg.data=0 reg.data_target=null)"
        )
    if not 0.0 < config_number(cfg, "reg.data_top") <= 1.0:
        raise GempoError(f"reg.data_top must be in (0, 1], got {cfg.reg.data_top}")
    for key in ("reg.data_target", "final.min_kmer3_corr"):
        if OmegaConf.select(cfg, key) is not None and not -1.0 <= config_number(cfg, key) <= 1.0:
            raise GempoError(
                f"{key} must be a correlation in [-1, 1] or null, got {OmegaConf.select(cfg, key)}"
            )


def load_oracles(cfg: DictConfig) -> Any:
    """The ``oracle=`` group's object; it must expose ``finetune``, ``eval`` and ``atac``."""
    oracles = instantiate(cfg.oracle)
    if not all(hasattr(oracles, role) for role in ("finetune", "eval", "atac")):
        raise GempoError(
            f"oracle={OmegaConf.select(cfg, 'oracle._target_')} does not provide fine-tune and "
            "eval Pred-Activity oracles; use oracle=pred_activity (or a config whose _target_ "
            "returns an object with .finetune, .eval and .atac)"
        )
    return oracles


def load_pretrained(cfg: DictConfig) -> SequenceGenerator:
    """The pretrained generator, checked against the ``model=`` architecture, with the model
    config's sampling settings."""
    model = OmegaConf.to_container(cfg.model, resolve=True)
    generator = load_generator(
        cfg.pretrained,
        steps=cfg.model.steps,
        temperature=cfg.model.temperature,
        model=model,
        ema=bool(cfg.pretrained_ema),
    )
    check_architecture(generator, model, f"pretrained={cfg.pretrained}")
    return generator


def kmer3_closeness(reference_kmers: np.ndarray) -> Callable[[Tensor], float]:
    """Tokens ``(batch, length)`` -> their pooled 3-mer counts' Pearson correlation to
    ``reference_kmers`` ``(64,)``: the closeness the 3-mer check measures."""
    return lambda x: count_pearson(kmer_counts(x, 3), reference_kmers)


def training_half(halves: HalfSplit) -> pd.DataFrame:
    """What fine-tuning may read of the world's data (``halves``:
    :func:`dna.data.configured_halves`): the fine-tune oracle's half, its sequences and
    measured activities only (no ``true_*`` columns, no other half)."""
    return halves.first[["seq", *ACTIVITY_COLUMNS]]


def repeat_penalty(cfg: DictConfig, data: pd.DataFrame) -> RepeatPenalty | None:
    """The ``repeats`` term of the training reward (``None`` with ``repeats.weight=0``); its
    allowed copies from the training half's sequences ``data``."""
    if not config_number(cfg, "repeats.weight") > 0:
        return None
    return RepeatPenalty.from_data(
        data["seq"].tolist(),
        weight=config_number(cfg, "repeats.weight"),
        k=config_number(cfg, "repeats.k", int),
        quantile=config_number(cfg, "repeats.quantile"),
    )


def training_reference_kmers(data: pd.DataFrame, cfg: DictConfig) -> np.ndarray:
    """The 3-mer counts ``(64,)`` of the training half's top 0.1% by the objective's target
    column: the reference of the constraint training holds (the reported 3-mer correlation
    uses the other half's top 0.1%)."""
    reference = top_fraction_reference(data, TOP_FRACTION, column=str(cfg.cell.target))
    return kmer_counts(encode(reference), 3)


def anchor_sequences(data: pd.DataFrame, reward: OracleReward, fraction: float) -> list[str]:
    """The data sequences the anchor replays: the ``fraction`` of the world (at least one) with
    the highest objective value under their *measured* activities (no oracle calls)."""
    measured = torch.tensor(data[list(ACTIVITY_COLUMNS)].to_numpy(np.float32))
    count = max(1, math.ceil(fraction * len(data)))
    best = torch.topk(reward.from_activities(measured), count).indices
    return data["seq"].iloc[best.numpy()].tolist()


def build_module(
    cfg: DictConfig,
    generator: SequenceGenerator,
    reward: OracleReward,
    run_dir: Path,
    data: pd.DataFrame | None = None,
) -> DNAGeMPOModule:
    """The GeMPO LightningModule from config (the ``objective`` group, reg, schedule).
    ``data``: the training half of the world's data (columns ``seq`` and the activities; the
    fine-tune oracle's half, :func:`training_half`): its most active sequences are
    replayed when ``reg.data > 0``, and the 3-mer counts of its top 0.1% by the objective's
    target column are what the batches' 3-mer correlation is logged against (the closeness
    that ``reg.data_target`` and ``final.min_kmer3_corr`` hold); without it, neither."""
    objective: GeMPOObjective = instantiate(
        cfg.objective, reg_alpha=float(cfg.reg.alpha), data_alpha=float(cfg.reg.data)
    )
    reference = copy.deepcopy(generator) if cfg.reg.alpha > 0 else None
    replay = None
    if cfg.reg.data > 0:
        if data is None:
            raise GempoError("reg.data > 0 needs the data world's sequences to replay")
        sequences = anchor_sequences(data, reward, float(cfg.reg.data_top))
        replay = DataReplay(encode(sequences), batch_size=int(cfg.reg.data_batch))
    anchor = None
    if cfg.reg.data_target is not None:
        anchor = AnchorController(
            target=float(cfg.reg.data_target),
            start=float(cfg.reg.data),
            rate=float(cfg.reg.data_rate),
            low=float(cfg.reg.data),  # the floor it starts from
            high=max(1.0, float(cfg.reg.data)),
        )
    select = None
    if cfg.final.min_kmer3_corr is not None:
        select = BestFeasibleSnapshot(min_closeness=float(cfg.final.min_kmer3_corr))
    return DNAGeMPOModule(
        policy=generator,
        reward=reward,
        objective=objective,
        optimizer=instantiate(cfg.optimizer),
        group_size=int(cfg.group_size),
        refresh_every=int(cfg.refresh_every),
        reference=reference,
        ema_decay=cfg.ema_decay,
        updates_per_batch=int(cfg.updates_per_batch),
        checkpoint_path=run_dir / "checkpoints" / "last.ckpt",
        checkpoint_every=int(cfg.checkpoint_every),
        data=replay,
        closeness=None if data is None else kmer3_closeness(training_reference_kmers(data, cfg)),
        closeness_key="kmer3_corr",
        anchor=anchor,
        select=select,
    )
