"""The enhancer-design benchmark table: ``python -m dna.evaluate inputs=[a.pt,b.fasta,...]``.

For each input (a generator checkpoint, sampled ``num_samples`` times, or a FASTA file of
sequences) one row: median Pred-Activity under the *eval* oracle (and the fine-tune oracle),
ATAC-Acc, 3-mer Pearson and JASPAR motif-count Spearman correlation against the top-0.1%
of the eval oracle's data half (training holds its 3-mer constraint against the other half's),
App-Log-Lik (median log-likelihood under the pretrained model), diversity (mean
pairwise Hamming distance, distinct 10-mers) and, in the simulated world, the ground-truth
activity and accessibility (how much of an oracle gain is real). Baseline rows: the pretrained
model (``include_pretrained``) and best-of-N under an oracle-call budget (``best_of_n``).
Writes ``evaluation.md``, ``evaluation.csv`` and ``evaluation.json`` to the run directory::

    python -m dna.evaluate inputs=[outputs/dna_finetune/hepg2-linear-seed0/generator.pt] \
        best_of_n=12800
    python -m dna.evaluate inputs=[my_designs.fasta] include_pretrained=false
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from hydra.utils import instantiate, to_absolute_path
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn

from dna import metrics
from dna.data import (
    ACTIVITY_COLUMNS,
    TOP_FRACTION,
    HalfSplit,
    configured_halves,
    load_enhancers,
    simulated_dataset_path,
    simulated_truth,
    split_halves,
    top_fraction_reference,
)
from dna.model import SequenceGenerator, load_generator
from dna.rewards import OracleReward, cell_reward
from dna.sequences import SEQ_LEN, decode, encode, read_fasta
from dna.worlds import REAL, SIMULATED, check_worlds
from gempo.errors import GempoError
from gempo.nets import module_device
from gempo.runs import atomic_output, claim_export, hydra_main, run_directory, write_json

log = logging.getLogger(__name__)

FASTA_SUFFIXES = (".fa", ".fasta", ".fna", ".fas")
COLUMN_TITLES = {
    "name": "method",
    "num": "n",
    "true_activity": "true activity",  # ground truth first (simulated world only)
    "true_top_share": "true > data's top 0.1% (%)",
    "oracle_gap": "eval − true",
    "true_atac": "true ATAC %",
    "pred_activity": "Pred-Act (eval)",
    "pred_activity_ft": "Pred-Act (ft)",
    "pred_activity_audit": "Pred-Act (audit)",
    "atac_acc": "ATAC-Acc %",
    "kmer3_corr": "3-mer corr",
    "motif_corr": "motif corr",
    "app_log_lik": "App-Log-Lik",
    "hamming": "Hamming",
    "distinct_10mer": "distinct 10-mers",
    "oracle_calls": "oracle calls",
}


@dataclass
class EvaluationWorld:
    """What every row is measured against.

    ``reward``/``eval_reward``/``audit_reward``: the objective under the fine-tune / eval /
    audit oracle (the last may be ``None``);
    ``reference``: tokens ``(num_ref, length)`` of the top-0.1% sequences by the target column
    in the eval oracle's half of the data (``reference_half`` names it), which training never
    reads: the reported 3-mer and motif correlations are not the constraint training holds;
    ``threshold``: the 99.9th percentile of the data's target activity; ``simulated``: whether
    the simulator's ground truth applies; ``true_threshold``: then, the 99.9th percentile of the
    objective's true value over the data (what the designs' truth is checked against).
    """

    reward: OracleReward
    eval_reward: OracleReward
    atac: nn.Module | None
    pretrained: SequenceGenerator
    reference: Tensor
    reference_half: str
    audit_reward: OracleReward | None
    threshold: float
    simulated: bool
    true_threshold: float | None = None
    log_lik_times: int = 32
    motifs: Sequence[str] | None = None
    batch_size: int = 128

    def __post_init__(self) -> None:
        self.reference_kmers = metrics.kmer_counts(self.reference, 3)
        self.reference_motifs = metrics.motif_totals(self.reference, self.motifs)


def load_world_data(
    path: str | None, num_sequences: int, seed: int, length: int = SEQ_LEN
) -> tuple[pd.DataFrame, bool]:
    """The configured data world's table (sequences of ``length``; other rows of a user's file
    are dropped; the simulated world's also has the simulator's truth, ``true_hepg2``, ...)
    and whether it is the simulated one."""
    if path is None:
        file = simulated_dataset_path(num_sequences, seed)
        data = load_enhancers(file)
        truth = simulated_truth(file, data["seq"].tolist())
        return data.assign(
            **{f"true_{c}": truth[:, k] for k, c in enumerate(ACTIVITY_COLUMNS)}
        ), True
    return load_enhancers(to_absolute_path(str(path)), skip_invalid=True, seq_len=length), False


def build_world(
    oracles: Any,
    pretrained: SequenceGenerator,
    data: pd.DataFrame,
    simulated: bool,
    cell: dict[str, Any],
    log_lik_times: int = 32,
    motifs: Sequence[str] | None = None,
    reference_fraction: float = TOP_FRACTION,
    halves: HalfSplit | None = None,
) -> EvaluationWorld:
    """An :class:`EvaluationWorld` from an ``OracleSet`` (``finetune``, ``eval``, ``atac``), the
    pretrained generator, the data table and the objective (``cell`` config). The thresholds
    are the whole data's; the naturalness reference is the eval oracle's half's (``halves``:
    :func:`dna.data.configured_halves`; default :func:`dna.data.split_halves` of ``data``)."""
    check_worlds(SIMULATED if simulated else REAL, oracles, pretrained, pretrained.length)
    target = cell["target"]
    reward = cell_reward(oracles.finetune, cell)
    halves = split_halves(data) if halves is None else halves
    audit = getattr(oracles, "audit", None)  # a user's oracle object may have none
    reference = encode(top_fraction_reference(halves.second, reference_fraction, column=target))
    return EvaluationWorld(
        reward=reward,
        eval_reward=cell_reward(oracles.eval, cell),
        atac=oracles.atac,
        pretrained=pretrained,
        reference=reference,
        reference_half=halves.name("second"),
        audit_reward=None if audit is None else cell_reward(audit, cell),
        threshold=measured_threshold(data, target),
        simulated=simulated,
        true_threshold=true_threshold(data, reward) if simulated else None,
        log_lik_times=log_lik_times,
        motifs=list(motifs) if motifs else None,
    )


def measured_threshold(data: pd.DataFrame, target: str) -> float:
    """The 99.9th percentile of the data's measured ``target`` activity."""
    return float(np.quantile(data[target].to_numpy(), 1.0 - TOP_FRACTION))


def true_threshold(data: pd.DataFrame, reward: OracleReward) -> float:
    """The 99.9th percentile of the objective's true value over the data: the ``true_*``
    columns of the simulated world's table (:func:`load_world_data`), else the simulator's
    truth of its sequences."""
    columns = [f"true_{c}" for c in ACTIVITY_COLUMNS]
    if set(columns) <= set(data.columns):
        truth = torch.tensor(data[columns].to_numpy(np.float32))
    else:
        from dna.simulator import true_activity

        truth = torch.from_numpy(true_activity(data["seq"].tolist())).float()
    return float(np.quantile(reward.from_activities(truth).numpy(), 1.0 - TOP_FRACTION))


@torch.no_grad()
def score_sequences(world: EvaluationWorld, tokens: Tensor) -> pd.DataFrame:
    """One row per sequence: ``seq``, the fine-tune, eval (and audit) oracles' three activities
    (``ft_hepg2``, ..., ``eval_sknsh``, ``audit_*``), the objective under each (``reward_ft``,
    ``reward_eval``, ``reward_audit``), ``atac_prob``, ``log_lik`` under the pretrained model
    and, in the simulated world, ``true_hepg2``, ..., ``true_reward`` and ``true_accessible``."""
    frame = pd.DataFrame({"seq": decode(tokens)})
    oracles = {"ft": world.reward, "eval": world.eval_reward, "audit": world.audit_reward}
    for prefix, reward in ((p, r) for p, r in oracles.items() if r is not None):
        activity = reward.activities(tokens)
        for k, cell in enumerate(ACTIVITY_COLUMNS):
            frame[f"{prefix}_{cell}"] = activity[:, k].numpy()
        frame[f"reward_{prefix}"] = reward.from_activities(activity).numpy()
    if world.atac is not None:
        device = module_device(world.atac)
        probs = [
            world.atac.predict_proba(tokens[i : i + 1024].to(device)).cpu()
            for i in range(0, len(tokens), 1024)
        ]
        frame["atac_prob"] = torch.cat(probs).float().numpy()
    frame["log_lik"] = world.pretrained.log_likelihood_batched(
        tokens, world.log_lik_times, world.batch_size
    ).numpy()
    if world.simulated:
        from dna.simulator import is_accessible, true_activity

        truth = true_activity(tokens)
        for k, cell in enumerate(ACTIVITY_COLUMNS):
            frame[f"true_{cell}"] = truth[:, k]
        frame["true_reward"] = world.reward.from_activities(torch.from_numpy(truth)).numpy()
        frame["true_accessible"] = is_accessible(tokens).astype(np.int64)
    return frame


def summarize(
    world: EvaluationWorld, tokens: Tensor, scores: pd.DataFrame, name: str
) -> dict[str, Any]:
    """The table row of one sequence set from its per-sequence ``scores``."""
    row: dict[str, Any] = {
        "name": name,
        "num": len(tokens),
        "pred_activity": metrics.median(scores["reward_eval"]),
        "pred_activity_ft": metrics.median(scores["reward_ft"]),
        "pred_activity_audit": metrics.median(scores["reward_audit"])
        if "reward_audit" in scores
        else float("nan"),
        "atac_acc": metrics.share_percent(scores["atac_prob"] >= 0.5)
        if "atac_prob" in scores
        else float("nan"),
        "kmer3_corr": metrics.count_pearson(metrics.kmer_counts(tokens, 3), world.reference_kmers),
        "motif_corr": metrics.rank_correlation(
            metrics.motif_totals(tokens, world.motifs), world.reference_motifs
        ),
        "app_log_lik": metrics.median(scores["log_lik"]),
        "hamming": metrics.mean_pairwise_hamming(tokens),
        "distinct_10mer": metrics.distinct_kmer_share(tokens, 10),
    }
    if world.simulated:
        row["true_activity"] = metrics.median(scores["true_reward"])
        row["true_top_share"] = metrics.share_percent(scores["true_reward"] > world.true_threshold)
        row["oracle_gap"] = row["pred_activity"] - row["true_activity"]
        row["true_atac"] = metrics.share_percent(scores["true_accessible"])
    return row


def evaluate_tokens(world: EvaluationWorld, tokens: Tensor, name: str) -> dict[str, Any]:
    """Score and summarize one sequence set ``(num, length)``."""
    if tokens.shape[1] != world.reference.shape[1]:
        raise GempoError(
            f"{name}: sequences of length {tokens.shape[1]}, expected {world.reference.shape[1]}"
        )
    return summarize(world, tokens, score_sequences(world, tokens), name)


@torch.no_grad()
def best_of_n(
    generator: SequenceGenerator,
    reward: OracleReward,
    budget: int,
    keep: int,
    batch_size: int = 128,
) -> Tensor:
    """Best-of-N baseline: draw ``budget`` sequences (one oracle call each), keep the ``keep``
    best under ``reward``; returns ``(keep, length)`` tokens."""
    if budget < keep:
        raise GempoError(f"best_of_n budget {budget} is smaller than the {keep} samples to keep")
    kept = torch.zeros(0, generator.length, dtype=torch.long)
    kept_rewards = torch.zeros(0)
    for start in range(0, budget, batch_size):
        tokens = generator.sample_tokens(min(batch_size, budget - start), batch_size)
        pool = torch.cat([kept, tokens])
        rewards = torch.cat([kept_rewards, reward(torch.zeros(len(tokens), 0), tokens)])
        best = rewards.topk(min(keep, len(rewards))).indices
        kept, kept_rewards = pool[best], rewards[best]
    return kept


def input_tokens(
    path: str, num_samples: int, steps: int | None, seed: int, batch_size: int
) -> Tensor:
    """Tokens of one input: a FASTA file's sequences, or ``num_samples`` from a generator."""
    file = Path(to_absolute_path(path))
    if file.suffix.lower() in FASTA_SUFFIXES:
        seqs = read_fasta(file)
        lengths = {len(s) for s in seqs}
        if len(lengths) != 1:
            raise GempoError(f"{file}: sequences of several lengths {sorted(lengths)[:5]}")
        return encode(seqs)
    generator = load_generator(path, steps=steps)
    torch.manual_seed(seed)
    return generator.sample_tokens(num_samples, batch_size)


def row_name(path: str) -> str:
    """A short row name: the file stem, or the run folder for ``generator.pt``/``last.ckpt``."""
    file = Path(path)
    if file.stem in ("generator", "last") and file.parent.name:
        parent = file.parent.parent if file.parent.name == "checkpoints" else file.parent
        return parent.name
    return file.stem


def format_markdown(rows: list[dict[str, Any]]) -> str:
    """The rows as a Markdown table (columns that are nan in every row are left out)."""
    frame = pd.DataFrame(rows)
    keep = [c for c in COLUMN_TITLES if c in frame.columns and not frame[c].isna().all()]
    lines = [
        "| " + " | ".join(COLUMN_TITLES[c] for c in keep) + " |",
        "|" + "|".join("---" for _ in keep) + "|",
    ]
    for _, row in frame[keep].iterrows():
        lines.append("| " + " | ".join(_cell(row[c]) for c in keep) + " |")
    return "\n".join(lines) + "\n"


def _cell(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "–"
        return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def write_table(
    rows: list[dict[str, Any]], directory: Path, stem: str, header: str = ""
) -> dict[str, Path]:
    """Write ``<stem>.md``, ``<stem>.csv`` and ``<stem>.json`` atomically."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = {ext: directory / f"{stem}.{ext}" for ext in ("md", "csv", "json")}
    with atomic_output(paths["md"]) as tmp:
        tmp.write_text((header + "\n\n" if header else "") + format_markdown(rows))
    with atomic_output(paths["csv"]) as tmp:
        pd.DataFrame(rows).to_csv(tmp, index=False)
    write_json(paths["json"], {"rows": rows})
    return paths


def validate_evaluate_config(cfg: DictConfig) -> None:
    """One-line errors for bad values."""
    if int(cfg.num_samples) < 1:
        raise GempoError(f"num_samples must be >= 1, got {cfg.num_samples}")
    if int(cfg.sample_batch_size) < 1:
        raise GempoError(f"sample_batch_size must be >= 1, got {cfg.sample_batch_size}")
    if not cfg.inputs and not cfg.include_pretrained and not cfg.best_of_n:
        raise GempoError("nothing to evaluate: give inputs=[...] or include_pretrained=true")
    if cfg.best_of_n and int(cfg.best_of_n) < int(cfg.num_samples):
        raise GempoError(f"best_of_n={cfg.best_of_n} must be 0 or >= num_samples={cfg.num_samples}")


def evaluate(cfg: DictConfig) -> list[dict[str, Any]]:
    """Build the world from ``cfg``, evaluate every row and write the table."""
    validate_evaluate_config(cfg)
    out = run_directory()
    tables = [out / f"{cfg.output_name}.{ext}" for ext in ("md", "csv", "json")]
    claim_export(tables, bool(cfg.overwrite), option="output_name")
    oracles = instantiate(cfg.oracle)
    pretrained = load_generator(
        cfg.pretrained, steps=cfg.sampling_steps, ema=bool(cfg.pretrained_ema)
    )
    data, simulated = load_world_data(
        cfg.data.get("path"), cfg.data.num_sequences, cfg.data.seed, pretrained.length
    )
    cell = OmegaConf.to_container(cfg.cell, resolve=True)
    halves = configured_halves(data, cfg.data)
    world = build_world(
        oracles, pretrained, data, simulated, cell, cfg.log_lik_times, cfg.motifs, halves=halves
    )
    rows: list[dict[str, Any]] = []
    if cfg.include_pretrained:
        torch.manual_seed(cfg.seed)
        tokens = pretrained.sample_tokens(cfg.num_samples, cfg.sample_batch_size)
        rows.append(evaluate_tokens(world, tokens, "pretrained"))
    if cfg.best_of_n:
        torch.manual_seed(cfg.seed)
        tokens = best_of_n(
            pretrained,
            world.reward,
            int(cfg.best_of_n),
            int(cfg.num_samples),
            cfg.sample_batch_size,
        )
        rows.append(evaluate_tokens(world, tokens, f"best-of-N (N={cfg.best_of_n})"))
        rows[-1]["oracle_calls"] = int(cfg.best_of_n)
    for path in cfg.inputs:
        tokens = input_tokens(
            str(path), cfg.num_samples, cfg.sampling_steps, cfg.seed, cfg.sample_batch_size
        )
        rows.append(evaluate_tokens(world, tokens, row_name(str(path))))
    header = (
        f"Objective: {cell['target']}"
        + (
            f" specificity (off-target weight {cell['off_target_weight']})"
            if cell["off_target_weight"]
            else ""
        )
        + f"; 99.9th percentile of the data's {cell['target']} activity: "
        f"{world.threshold:.3f} (measured)"
        + (
            f", {world.true_threshold:.3f} (true); simulated world, ground truth first."
            if simulated
            else "; real world."
        )
        + f" 3-mer and motif correlations against the top 0.1% of {world.reference_half}."
    )
    paths = write_table(rows, out, cfg.output_name, header)
    print(format_markdown(rows))
    log.info("wrote %s", ", ".join(str(p) for p in paths.values()))
    return rows


@hydra_main("dna_evaluate")
def main(cfg: DictConfig) -> list[dict[str, Any]]:
    """``python -m dna.evaluate``: see the module docstring."""
    return evaluate(cfg)


if __name__ == "__main__":
    main()
