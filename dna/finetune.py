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

import copy
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import Tensor

from dna.data import ACTIVITY_COLUMNS
from dna.evaluate import (
    EvaluationWorld,
    build_world,
    format_markdown,
    load_world_data,
    score_sequences,
    summarize,
)
from dna.metrics import count_pearson, kmer_counts, mean_pairwise_hamming
from dna.model import (
    SequenceGenerator,
    check_architecture,
    load_generator,
    record_generator,
    save_generator,
)
from dna.rewards import OracleReward
from dna.sequences import encode, write_fasta
from gempo.errors import GempoError
from gempo.losses import GeMPOObjective, ReweightedLoss
from gempo.module import (
    AnchorController,
    BestFeasibleSnapshot,
    ContextStream,
    DataReplay,
    GeMPOModule,
)
from gempo.nets import freeze
from gempo.runs import (
    atomic_output,
    check_minimums,
    claim_run_dir,
    command_line,
    config_number,
    hydra_main,
    progress_bar,
    resume_checkpoint,
    run_directory,
    run_loggers,
    write_json,
)

log = logging.getLogger(__name__)


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
            self.trainer.save_checkpoint(self.checkpoint_path)

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
        "loss_times": 1,
        "updates_per_batch": 1,
    }
    check_minimums(cfg, minimums)
    if cfg.normalization == "zscore" and int(cfg.group_size) < 2:
        raise GempoError("normalization=zscore needs group_size >= 2")
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
    reference_kmers: np.ndarray | None = None,
    data: pd.DataFrame | None = None,
) -> DNAGeMPOModule:
    """The GeMPO LightningModule from config (weight, normalization, loss, reg, schedule);
    ``reference_kmers``: the 3-mer counts ``(64,)`` the batches' 3-mer correlation is logged
    against (the closeness that ``reg.data_target`` and ``final.min_kmer3_corr`` use); ``data``:
    the world's sequences (column ``seq``), replayed when ``reg.data > 0``."""
    objective = GeMPOObjective(
        weight=instantiate(cfg.weight),
        normalization=cfg.normalization,
        loss=ReweightedLoss(**OmegaConf.to_container(cfg.loss, resolve=True)),
        reg_alpha=float(cfg.reg.alpha),
        loss_times=int(cfg.loss_times),
        reward_cap=cfg.reward_cap,
        data_alpha=float(cfg.reg.data),
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
        closeness=kmer3_closeness(reference_kmers) if reference_kmers is not None else None,
        closeness_key="kmer3_corr",
        anchor=anchor,
        select=select,
        temperature_lr=float(cfg.temperature_lr),
    )


def world_label(simulated: bool) -> str:
    """How outputs name the world their numbers come from."""
    return "simulated" if simulated else "real"


def write_samples(scores: Any, run_dir: Path, simulated: bool) -> None:
    """``samples.csv`` (all per-sequence columns and the ``world``) and ``samples.fasta`` (ids
    carry the ground-truth objective value in the simulated world, the eval oracle's, and the
    world)."""
    with atomic_output(run_dir / "samples.csv") as tmp:
        scores.assign(world=world_label(simulated)).to_csv(tmp, index=False)
    truth = scores["true_reward"] if simulated else [None] * len(scores)
    ids = [
        f"sample{i}|"
        + (f"true={t:.3f}|" if t is not None else "")
        + f"eval={v:.3f}|world={world_label(simulated)}"
        for i, (t, v) in enumerate(zip(truth, scores["reward_eval"], strict=True))
    ]
    write_fasta(run_dir / "samples.fasta", scores["seq"].tolist(), ids)


def plot_training_curve(
    metrics_csv: Path,
    path: Path,
    threshold: float | None = None,
    selected_step: int | None = None,
    simulated: bool = False,
) -> Path:
    """``reward_curve.png``: the behaviour batches' reward (median, mean, max), diversity and
    3-mer correlation to the reference against oracle calls, from the run's ``metrics.csv``;
    ``threshold`` as a dashed line, the batch of ``selected_step`` (``final.min_kmer3_corr``)
    as a dotted one."""
    from matplotlib.figure import Figure  # no pyplot: leaves the caller's backend alone

    logged = pd.read_csv(metrics_csv).dropna(subset=["train/reward_mean"])
    batches = logged.drop_duplicates("train/reward_calls", keep="first")
    calls = batches["train/reward_calls"]
    fig = Figure(figsize=(9, 3.6))
    reward, diversity = fig.subplots(1, 2)
    for key in ("reward_median", "reward_mean", "reward_max"):
        reward.plot(calls, batches[f"train/{key}"], label=key.removeprefix("reward_"))
    if threshold is not None:
        reward.axhline(threshold, color="k", ls="--", lw=1, label="99.9th pct of the data")
    reward.set(xlabel="oracle calls", ylabel="reward (fine-tune oracle)", title="behaviour batch")
    diversity.plot(calls, batches["train/diversity"], color="tab:green", label="pairwise Hamming")
    if "train/kmer3_corr" in batches:
        diversity.plot(calls, batches["train/kmer3_corr"], color="tab:purple", label="3-mer corr")
        diversity.axhline(
            MIN_KMER3_CORR, color="k", ls="--", lw=1, label=f"3-mer check ({MIN_KMER3_CORR})"
        )
    diversity.set(xlabel="oracle calls", ylim=(0, 1), title="sequence statistics")
    selected = logged.loc[logged["step"] == selected_step, "train/reward_calls"]
    for ax in (reward, diversity):
        if not selected.empty:
            ax.axvline(selected.iloc[0], color="tab:red", ls=":", lw=1.5, label="selected batch")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle(f"GeMPO fine-tuning, {world_label(simulated)} world", fontsize=10)
    fig.tight_layout()
    with atomic_output(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    return path


MIN_KMER3_CORR = 0.5
"""Acceptance: the designs' 3-mer spectrum correlates at least this much with the reference."""
MAX_LOG_LIK_DROP = 0.15
"""Acceptance: App-Log-Lik within this share of the pretrained model's."""
NATURALNESS_CHECKS = (
    f"kmer3_corr_at_least_{MIN_KMER3_CORR}",
    f"app_log_lik_within_{round(100 * MAX_LOG_LIK_DROP)}pct",
)


def check_names(simulated: bool) -> tuple[str, ...]:
    """The acceptance checks of a run's summary: the activity check first (on the ground truth
    in the simulated world, on the eval oracle in the real one), then naturalness."""
    activity = (
        "true_activity_above_true_threshold" if simulated else "pred_activity_above_threshold"
    )
    return (activity, *NATURALNESS_CHECKS)


def threshold_checks(rows: dict[str, dict[str, Any]], world: EvaluationWorld) -> dict[str, Any]:
    """The acceptance checks of the default run. Activity: in the simulated world the designs'
    median true activity above the data's true 99.9th percentile (the eval oracle's median
    against the data's measured 99.9th percentile is reported next to it, not checked); in the
    real world the eval oracle's median above the data's 99.9th percentile. Naturalness: 3-mer
    correlation >= :data:`MIN_KMER3_CORR`, App-Log-Lik within :data:`MAX_LOG_LIK_DROP` of the
    pretrained model's."""
    tuned = rows["finetuned"]
    activity, kmer3, log_lik = check_names(world.simulated)
    eval_above = tuned["pred_activity"] > world.threshold
    checks: dict[str, Any] = {
        activity: tuned["true_activity"] > world.true_threshold if world.simulated else eval_above,
        kmer3: tuned["kmer3_corr"] >= MIN_KMER3_CORR,
    }
    if "pretrained" in rows:
        base = rows["pretrained"]
        drop = abs(tuned["app_log_lik"] - base["app_log_lik"])
        checks[log_lik] = drop <= MAX_LOG_LIK_DROP * abs(base["app_log_lik"])
    if world.simulated:
        checks["eval_oracle_above_threshold (not checked)"] = eval_above
        if "pretrained" in rows:
            oracle_gain = tuned["pred_activity"] - base["pred_activity"]
            true_gain = tuned["true_activity"] - base["true_activity"]
            checks["eval_oracle_gain"] = oracle_gain
            checks["true_gain"] = true_gain
            checks["real_share_of_gain"] = true_gain / oracle_gain if oracle_gain else float("nan")
    return checks


def evaluation_world(
    cfg: DictConfig, oracles: Any, pretrained: SequenceGenerator
) -> tuple[EvaluationWorld, pd.DataFrame]:
    """The configured data world (reference set, threshold, ground truth) with the oracles and
    a frozen copy of the pretrained generator (training changes the original), on the CPU;
    and the world's data table."""
    data, simulated = load_world_data(
        cfg.data.get("path"), cfg.data.num_sequences, cfg.data.seed, pretrained.length
    )
    cell = OmegaConf.to_container(cfg.cell, resolve=True)
    frozen = freeze(copy.deepcopy(pretrained)).cpu()
    world = build_world(oracles, frozen, data, simulated, cell, cfg.final.log_lik_times)
    return world, data


def final_evaluation(
    cfg: DictConfig, module: DNAGeMPOModule, world: EvaluationWorld, run_dir: Path
) -> dict[str, Any]:
    """Sample ``final.num_samples`` sequences from the module's sampling policy (the selected
    snapshot with ``final.min_kmer3_corr``, else the EMA), score and write them, and
    compare with the pretrained model; when a snapshot was selected, the final model (no
    selection) is sampled and reported next to it. Returns the summary. Sampling and scoring
    run on the module's device (move the module, the oracles and ``world.pretrained`` there
    first)."""
    started = time.time()
    policy: SequenceGenerator = module.sampling_policy()
    save_generator(policy, run_dir / "generator.pt", meta={"command": command_line()})
    torch.manual_seed(int(cfg.seed) + 1)
    tokens = policy.sample_tokens(cfg.final.num_samples, cfg.final.batch_size, module.device).cpu()
    scores = score_sequences(world, tokens)
    write_samples(scores, run_dir, world.simulated)
    selected = policy is not module.final_policy()
    rows = {
        "finetuned": summarize(world, tokens, scores, "GeMPO (selected)" if selected else "GeMPO")
    }
    if selected:
        torch.manual_seed(int(cfg.seed) + 1)
        final = module.final_policy()
        final_tokens = final.sample_tokens(
            cfg.final.num_samples, cfg.final.batch_size, module.device
        ).cpu()
        rows["final_model"] = summarize(
            world, final_tokens, score_sequences(world, final_tokens), "GeMPO (final model)"
        )
    if cfg.final.compare_pretrained:
        torch.manual_seed(int(cfg.seed) + 1)
        base_tokens = world.pretrained.sample_tokens(
            cfg.final.num_samples, cfg.final.batch_size, module.device
        ).cpu()
        rows["pretrained"] = summarize(
            world, base_tokens, score_sequences(world, base_tokens), "pretrained"
        )
    return {
        "rows": rows,
        "threshold": world.threshold,
        "true_threshold": world.true_threshold,
        "simulated": world.simulated,
        "checks": threshold_checks(rows, world),
        "final_seconds": round(time.time() - started, 1),
    }


def thresholds_text(summary: dict[str, Any]) -> str:
    """The thresholds the designs are checked against, in words."""
    measured = f"the data's 99.9th percentile (measured): {summary['threshold']:.3f}"
    if summary.get("true_threshold") is None:
        return f"threshold, {measured}"
    return (
        f"thresholds: the data's 99.9th percentile of the true objective "
        f"{summary['true_threshold']:.3f} (checked against the designs' true median); {measured}"
    )


def sampled_from(selected: dict[str, Any] | None, ema: bool) -> str:
    """Which generator the final samples came from, in words; ``selected``: the summary's
    ``selected`` entry, ``ema``: whether an EMA was kept."""
    end = f"the {'EMA ' if ema else ''}generator at the end of the run"
    if selected is None:
        return end
    if selected["step"] is None:
        return f"{end} (no batch reached a 3-mer correlation of {selected['min_closeness']})"
    return (
        f"the behaviour policy of step {selected['step']} (batch median reward "
        f"{selected['batch_reward_median']:.2f}, batch 3-mer correlation "
        f"{selected['batch_closeness']:.3f}: the best batch with a 3-mer correlation >= "
        f"{selected['min_closeness']})"
    )


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
        world, data = evaluation_world(cfg, oracles, generator)
    module = build_module(cfg, generator, world.reward, run_dir, world.reference_kmers, data)
    trainer_cfg = OmegaConf.to_container(cfg.trainer, resolve=True)
    trainer = pl.Trainer(
        **trainer_cfg,
        limit_train_batches=trainer_cfg["max_steps"],  # one epoch = the whole budget (bar total)
        default_root_dir=run_dir,
        logger=run_loggers(run_dir, ckpt_path),
        enable_checkpointing=False,  # DNAGeMPOModule writes checkpoints/last.ckpt itself
        callbacks=progress_bar(cfg.trainer, refresh_rate=1),
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
    write_json(run_dir / "summary.json", summary)
    table = format_markdown(list(summary["rows"].values()))
    source = sampled_from(summary["selected"], ema=cfg.ema_decay is not None)
    with atomic_output(run_dir / "summary.md") as tmp:
        tmp.write_text(
            f"{summary['command']}\n\nworld: {world_label(summary['simulated'])}"
            f"{' (ground truth from the simulator)' if summary['simulated'] else ''}"
            f"\n\n{thresholds_text(summary)}\n\nsampled from: {source}\n\n{table}\n"
            f"checks: {summary['checks']}\n"
        )
    print(f"sampled from: {source}")
    print(table)
    print(f"checks: {summary['checks']}")
    return summary


main = hydra_main("dna_finetune")(finetune)
"""``python -m dna.finetune``: see the module docstring."""


if __name__ == "__main__":
    main()
