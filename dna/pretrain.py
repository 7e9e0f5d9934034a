"""Pretrain the masked diffusion generator on enhancer sequences: ``python -m dna.pretrain``.

Minimizes the masked-diffusion negative ELBO (``policy.per_sample_loss(x).flow_matching``, in
nats per sequence) on the configured data world, keeps an EMA of the weights, reports the
validation NELBO of the EMA model, writes checkpoints and, at the end, the EMA generator as
``generator.pt`` (and, with ``export_dir=``, the shipped checkpoint + ``manifest.json``)::

    python -m dna.pretrain                                   # small model, simulated MPRA
    python -m dna.pretrain model=drakes trainer.accelerator=gpu
    python -m dna.pretrain data=gosai data.path=/data/dataset.csv.gz
    python -m dna.pretrain resume=true                       # continue the run in the same folder
"""

from __future__ import annotations

import json
import logging
import math
import platform
import time
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import ModelCheckpoint
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from dna.model import SequenceGenerator, record_generator, save_generator
from dna.worlds import data_world
from gempo.errors import GempoError
from gempo.module import OptimizerFactory
from gempo.nets import freeze
from gempo.runs import (
    ProgressLog,
    check_minimums,
    claim_export,
    claim_run_dir,
    command_line,
    hydra_main,
    progress_bar,
    resume_checkpoint,
    run_directory,
    run_loggers,
    write_json,
)
from gempo.samplers import masked_nelbo

log = logging.getLogger(__name__)


def learning_rate_factor(step: int, warmup_steps: int, decay_steps: int | None) -> float:
    """The learning rate's multiplier at optimizer ``step``: a linear warmup over
    ``warmup_steps``, then constant, or with ``decay_steps`` a cosine decay that reaches 0 at
    step ``decay_steps`` and stays there."""
    factor = min(1.0, (step + 1) / max(warmup_steps, 1))
    if decay_steps is not None:
        factor *= 0.5 * (1.0 + math.cos(math.pi * min(step, decay_steps) / decay_steps))
    return factor


class MaskedDiffusionPretraining(pl.LightningModule):
    """Maximum-likelihood (NELBO) training of a :class:`~dna.model.SequenceGenerator`.

    Batches are dicts with ``tokens`` ``(batch, length)``. The EMA (``ema_decay``, or ``None``)
    is updated after every optimizer step and is what validation scores and what is exported.
    """

    def __init__(
        self,
        generator: SequenceGenerator,
        optimizer: OptimizerFactory,
        ema_decay: float | None = 0.999,
        warmup_steps: int = 200,
        val_num_times: int = 4,
        decay_steps: int | None = None,
    ) -> None:
        super().__init__()
        if ema_decay is not None and not 0.0 < ema_decay < 1.0:
            raise GempoError(f"ema_decay must be in (0, 1) or null, got {ema_decay}")
        if warmup_steps < 0 or val_num_times < 1:
            raise GempoError("warmup_steps must be >= 0 and val_num_times >= 1")
        if decay_steps is not None and decay_steps < 1:
            raise GempoError(f"decay_steps must be >= 1 or null, got {decay_steps}")
        self.generator = generator
        self.optimizer_factory = optimizer
        self.warmup_steps = warmup_steps
        self.decay_steps = decay_steps
        self.resumed_step: int | None = None  # the step of the checkpoint a resumed run loaded
        self.val_num_times = val_num_times
        self.ema = (
            freeze(
                AveragedModel(
                    generator, multi_avg_fn=get_ema_multi_avg_fn(ema_decay), use_buffers=True
                )
            )
            if ema_decay is not None
            else None
        )

    def trained_generator(self) -> SequenceGenerator:
        """The generator to export: the EMA when kept, else the trained weights."""
        return self.ema.module if self.ema is not None else self.generator

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        tokens = batch["tokens"]
        cond = tokens.new_zeros(tokens.shape[0], 0, dtype=torch.float32)
        nelbo = self.generator.per_sample_loss(tokens, cond).flow_matching.mean()
        self.log("train/nelbo", nelbo, prog_bar=True)
        self.log("train/bits_per_base", nelbo / (math.log(2.0) * tokens.shape[1]))
        return nelbo

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        # The EMA follows the optimizer step here (not in on_train_batch_end, which Lightning
        # runs after the checkpoint callback), so a saved checkpoint holds a consistent EMA.
        super().optimizer_step(*args, **kwargs)
        if self.ema is not None:
            self.ema.update_parameters(self.generator)

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        tokens = batch["tokens"]
        model = self.trained_generator()
        nelbo = masked_nelbo(model.denoiser, model.path, tokens, self.val_num_times).mean()
        size = tokens.shape[0]  # sync_dist: under DDP, the mean over every rank's shard
        self.log("val/nelbo", nelbo, prog_bar=True, batch_size=size, sync_dist=True)
        bits = nelbo / (math.log(2.0) * tokens.shape[1])
        self.log("val/bits_per_base", bits, batch_size=size, sync_dist=True)

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer = self.optimizer_factory(self.generator.parameters())
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: learning_rate_factor(s, self.warmup_steps, self.decay_steps)
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        record_generator(checkpoint, self.generator)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.resumed_step = int(checkpoint["global_step"])  # for the run's record


def export_generator(
    module: MaskedDiffusionPretraining, export_dir: Path, name: str, record: dict[str, Any]
) -> Path:
    """Write the shipped checkpoint ``<export_dir>/pretrained_<name>.pt`` and update the
    directory's ``manifest.json`` (sha256, command, data, training record)."""
    generator = module.trained_generator()
    path = export_dir / f"pretrained_{name}.pt"
    digest = save_generator(generator, path, meta=record)
    manifest_path = export_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    manifest[path.name] = {"sha256": digest, "bytes": path.stat().st_size, **record}
    write_json(manifest_path, manifest)
    return path


def validate_pretrain_config(cfg: DictConfig) -> None:
    """One-line errors for the values a user most often gets wrong."""
    check_minimums(cfg, {"data.batch_size": 1, "log_every": 1, "checkpoint_every": 1})
    if cfg.trainer.get("max_steps", -1) in (0, None):
        raise GempoError("trainer.max_steps must be > 0 (or -1 with trainer.max_time)")


def pretrain(cfg: DictConfig) -> dict[str, Any]:
    """Run pretraining as configured; returns the record written to ``pretrain_summary.json``."""
    validate_pretrain_config(cfg)
    run_dir = run_directory()
    resume_from = resume_checkpoint(cfg.resume, run_dir)
    claim_run_dir(run_dir, resume=bool(cfg.resume), overwrite=bool(cfg.overwrite))
    export_dir = Path(hydra.utils.to_absolute_path(cfg.export_dir)) if cfg.export_dir else None
    name = (
        HydraConfig.get().runtime.choices.get("model", "custom")
        if HydraConfig.initialized()
        else "custom"
    )
    if export_dir is not None:
        claim_export([export_dir / f"pretrained_{name}.pt"], bool(cfg.overwrite))
    pl.seed_everything(int(cfg.seed), workers=True)
    data: pl.LightningDataModule = instantiate(cfg.data)
    generator: SequenceGenerator = instantiate(cfg.model)
    generator.world = data_world(cfg.data.get("path"))
    module = MaskedDiffusionPretraining(
        generator,
        instantiate(cfg.optimizer),
        cfg.ema_decay,
        cfg.warmup_steps,
        cfg.val_num_times,
        cfg.decay_steps,
    )
    checkpoint = ModelCheckpoint(
        dirpath=run_dir / "checkpoints",
        save_last=True,
        save_top_k=0,
        every_n_train_steps=int(cfg.checkpoint_every),
    )
    trainer = pl.Trainer(
        **OmegaConf.to_container(cfg.trainer, resolve=True),
        default_root_dir=run_dir,
        logger=run_loggers(run_dir, resume_from),
        callbacks=[
            checkpoint,
            *progress_bar(cfg.trainer, refresh_rate=10),
            ProgressLog(int(cfg.log_every), ["train/nelbo", "val/nelbo"]),
        ],
    )
    started = time.time()
    trainer.fit(module, datamodule=data, ckpt_path=resume_from)
    trainer.save_checkpoint(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    if not trainer.is_global_zero:  # data-parallel workers: rank 0 exports and reports
        return {"rank": trainer.global_rank}
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    device = trainer.strategy.root_device
    record = {
        "command": command_line(),
        "model": OmegaConf.to_container(cfg.model, resolve=True),
        "parameters": generator.num_parameters(),
        "data": str(getattr(data, "resolved_path", lambda: cfg.data.get("path"))()),
        "world": generator.world,
        "optimizer_steps": trainer.global_step,
        "wall_seconds": round(time.time() - started, 1),
        "val_nelbo": metrics.get("val/nelbo"),
        "val_bits_per_base": metrics.get("val/bits_per_base"),
        "seed": int(cfg.seed),
        "torch": str(torch.__version__),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads"
        + (f", {torch.cuda.get_device_name(device)}" if device.type == "cuda" else ""),
    }
    if resume_from is not None:  # the run so far: where it resumed, and the record before
        earlier = run_dir / "pretrain_summary.json"
        record["resumed_from"] = {
            "checkpoint_step": module.resumed_step,
            "earlier": json.loads(earlier.read_text()) if earlier.is_file() else None,
        }
    save_generator(module.trained_generator(), run_dir / "generator.pt", meta=record)
    if export_dir is not None:
        log.info("exported %s", export_generator(module, export_dir, name, record))
    write_json(run_dir / "pretrain_summary.json", record)
    log.info("pretraining done: %s", json.dumps(record))
    return record


main = hydra_main("dna_pretrain")(pretrain)
"""``python -m dna.pretrain``: see the module docstring."""


if __name__ == "__main__":
    main()
