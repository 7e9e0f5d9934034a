"""GeMPO fine-tuning of the pretrained enhancer generator against an oracle:
``python -m dna.finetune oracle=pred_activity``.

Each step the behaviour policy (a frozen copy of the generator, refreshed every
``refresh_every`` steps) samples ``groups x group_size`` sequences, the fine-tune oracle scores
them (``cell=`` objective), rewards are normalized within each group and weighted by
``weight=`` (any of ``configs/weight/``), and the generator takes a reweighted masked-diffusion
step, optionally regularized toward the pretrained model (``reg.alpha``) and anchored on the
most active data sequences (``reg.data``, adapted to hold the batches' 3-mer correlation to the
reference near ``reg.data_target``). The final samples come from the behaviour policy of the
best-rewarded batch whose 3-mer correlation reached ``final.min_kmer3_corr`` (null: from the EMA
of the weights at the end). All of that is :class:`gempo.module.GeMPOModule`; this file adds
the DNA reward, logging (reward, weights, negative mass, loss, diversity, 3-mer correlation to
the reference, anchor weight, oracle calls), checkpoints with resume, and the final samples +
evaluation::

    python -m dna.finetune oracle=pred_activity                    # defaults: cell=hepg2
    python -m dna.finetune weight=exp weight.tau=0.5 seed=1
    python -m dna.finetune cell=specificity cell.target=k562 reg.alpha=0.1
    python -m dna.finetune resume=true                             # continue an interrupted run

Outputs in the run folder: ``checkpoints/last.ckpt``, ``logs/csv/metrics.csv``, TensorBoard
events in ``logs/tensorboard``, ``generator.pt`` (the generator the final samples come from),
``samples.fasta``, ``samples.csv``, ``reward_curve.png`` and ``summary.json`` / ``summary.md``.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf

from dna.report import evaluation_world, final_evaluation, plot_training_curve, write_summary
from dna.rewards import cell_reward
from dna.training import (
    build_module,
    load_oracles,
    load_pretrained,
    repeat_penalty,
    training_half,
    validate_finetune_config,
)
from gempo.module import ContextStream
from gempo.runs import (
    ProgressLog,
    claim_run_dir,
    command_line,
    hydra_main,
    progress_bar,
    resume_checkpoint,
    run_directory,
    run_loggers,
)

log = logging.getLogger(__name__)

FINETUNE_LOG_KEYS = ("train/reward_median", "train/kmer3_corr", "train/reward_calls")
"""The metrics of each progress line in ``finetune.log``."""


def finetune(cfg: DictConfig) -> dict[str, Any]:
    """Run GeMPO fine-tuning as configured; returns the summary (also ``summary.json``)."""
    validate_finetune_config(cfg)
    run_dir = run_directory()
    ckpt_path = resume_checkpoint(cfg.resume, run_dir)
    claim_run_dir(run_dir, resume=bool(cfg.resume), overwrite=bool(cfg.overwrite))
    pl.seed_everything(int(cfg.seed), workers=True)
    generator = load_pretrained(cfg)
    oracles = load_oracles(cfg)
    with torch.random.fork_rng(devices=[]):  # building it leaves the training RNG stream alone
        world, halves = evaluation_world(cfg, oracles, generator)
    # training reads the fine-tune oracle and its half of the data only (the world's eval
    # oracle, the other half and the truth report)
    training_data = training_half(halves)
    reward = cell_reward(
        oracles.finetune,
        OmegaConf.to_container(cfg.cell, resolve=True),
        repeat_penalty(cfg, training_data),
    )
    module = build_module(cfg, generator, reward, run_dir, training_data)
    trainer_cfg = OmegaConf.to_container(cfg.trainer, resolve=True)
    trainer = pl.Trainer(
        **trainer_cfg,
        limit_train_batches=trainer_cfg["max_steps"],  # one epoch = the whole budget (bar total)
        default_root_dir=run_dir,
        logger=run_loggers(run_dir, ckpt_path),
        enable_checkpointing=False,  # DNAGeMPOModule writes checkpoints/last.ckpt itself
        callbacks=[
            *progress_bar(cfg.trainer, refresh_rate=1),
            ProgressLog(int(cfg.log_every), FINETUNE_LOG_KEYS),
        ],
    )
    started = time.time()
    stream = torch.utils.data.DataLoader(ContextStream(groups=int(cfg.groups)), batch_size=None)
    trainer.fit(module, stream, ckpt_path=ckpt_path)
    train_seconds = time.time() - started
    if not trainer.is_global_zero:  # data-parallel workers: rank 0 evaluates and reports
        return {"rank": trainer.global_rank}
    summary: dict[str, Any] = {
        "command": command_line(),
        "task": str(cfg.cell.target)
        + (" specificity" if float(cfg.cell.off_target_weight) else ""),
        "seed": int(cfg.seed),
        "weight": repr(module.objective.weight),
        "reg_alpha": float(cfg.reg.alpha),
        "reg_data": float(cfg.reg.data),
        "reg_data_top": float(cfg.reg.data_top),
        "reg_data_target": cfg.reg.data_target,
        "repeats": None if reward.repeats is None else repr(reward.repeats),
        "final_data_alpha": module.data_weight(),
        "selected": module.select.summary() if module.select is not None else None,
        "optimizer_steps": trainer.global_step,
        "oracle_calls": int(module.samples_scored),
        "train_seconds": round(train_seconds, 1),
        "threads": torch.get_num_threads(),  # results depend on it (docs/dna.md, "Threads")
        "resumed_from": ckpt_path,
    }
    device = trainer.strategy.root_device  # the end of fit moved the module to the CPU
    oracles.to(device)
    world.pretrained.to(device)
    summary.update(final_evaluation(cfg, module.to(device), world, run_dir))
    summary["total_seconds"] = round(time.time() - started, 1)
    plot_training_curve(
        run_dir / "logs" / "csv" / "metrics.csv",
        run_dir / "reward_curve.png",
        summary["threshold"],
        (summary["selected"] or {}).get("step"),
        summary["simulated"],
    )
    write_summary(summary, run_dir, ema=cfg.ema_decay is not None)
    return summary


main = hydra_main("dna_finetune")(finetune)
"""``python -m dna.finetune``: see the module docstring."""


if __name__ == "__main__":
    main()
