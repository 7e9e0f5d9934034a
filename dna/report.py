"""The DNA fine-tuning run's report: the final samples from the selected snapshot (and the
final model next to it), their scores against the world, ``samples.csv``/``samples.fasta``,
the reward curve, and ``summary.md`` / ``summary.json``."""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf

from dna.checks import MIN_KMER3_CORR, threshold_checks
from dna.data import HalfSplit, configured_halves
from dna.evaluate import (
    EvaluationWorld,
    build_world,
    format_markdown,
    load_world_data,
    score_sequences,
    summarize,
)
from dna.model import SequenceGenerator, save_generator
from dna.sequences import write_fasta
from gempo.module import GeMPOModule
from gempo.nets import freeze
from gempo.runs import atomic_output, command_line, write_json


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


def evaluation_world(
    cfg: DictConfig, oracles: Any, pretrained: SequenceGenerator
) -> tuple[EvaluationWorld, HalfSplit]:
    """The configured data world (reference set, threshold, ground truth) with the oracles and
    a frozen copy of the pretrained generator (training changes the original), on the CPU;
    and the data's halves as the oracles split them (:func:`dna.data.configured_halves`)."""
    data, simulated = load_world_data(
        cfg.data.get("path"), cfg.data.num_sequences, cfg.data.seed, pretrained.length
    )
    cell = OmegaConf.to_container(cfg.cell, resolve=True)
    frozen = freeze(copy.deepcopy(pretrained)).cpu()
    halves = configured_halves(data, cfg.data)
    world = build_world(
        oracles, frozen, data, simulated, cell, cfg.final.log_lik_times, halves=halves
    )
    return world, halves


def final_evaluation(
    cfg: DictConfig, module: GeMPOModule, world: EvaluationWorld, run_dir: Path
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
        "naturalness_reference": world.reference_half,
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


def reference_text(summary: dict[str, Any]) -> str:
    """What the reported 3-mer and motif correlations are measured against, in words."""
    half = summary.get("naturalness_reference", "the data")
    return (
        f"3-mer and motif correlations: against the top 0.1% of {half} (the eval oracle's half); "
        "training's 3-mer constraint (anchor target, selection) holds against the other half's"
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


def write_summary(summary: dict[str, Any], run_dir: Path, ema: bool) -> None:
    """``summary.json`` and ``summary.md`` (the world, the thresholds, where the samples came
    from, the table with the truth first, the checks); the table and checks are also printed.
    ``ema``: whether the run kept an EMA of the weights."""
    write_json(run_dir / "summary.json", summary)
    table = format_markdown(list(summary["rows"].values()))
    source = sampled_from(summary["selected"], ema=ema)
    with atomic_output(run_dir / "summary.md") as tmp:
        tmp.write_text(
            f"{summary['command']}\n\nworld: {world_label(summary['simulated'])}"
            f"{' (ground truth from the simulator)' if summary['simulated'] else ''}"
            f"\n\n{thresholds_text(summary)}\n\n{reference_text(summary)}"
            f"\n\nsampled from: {source}\n\n{table}\n"
            f"checks: {summary['checks']}\n"
        )
    print(f"sampled from: {source}")
    print(table)
    print(f"checks: {summary['checks']}")
