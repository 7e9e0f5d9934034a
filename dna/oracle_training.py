"""Training of the oracles behind ``python -m dna.oracle``: Lightning module, runs, metrics, export.

``oracle=pred_activity`` trains two copies of :class:`~dna.oracle.PredActivityOracle`, the
*fine-tune* oracle on chromosomes 1-11 and the *eval* oracle on chromosomes 12-22 (each tested on
the other half; other chromosomes validate). ``oracle=atac`` trains one
:class:`~dna.oracle.AccessibilityClassifier` on chromosomes 1-11.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger
from scipy import stats

from dna.data import ACTIVITY_COLUMNS, EnhancerDataModule, half_name
from dna.oracle import (
    AccessibilityClassifier,
    KmerRidgeOracle,
    PredActivityOracle,
    SequenceCNN,
    save_oracle,
)
from dna.sequences import encode
from dna.worlds import data_world
from gempo.errors import GempoError
from gempo.runs import (
    atomic_output,
    claim_export,
    claim_run_dir,
    command_line,
    hydra_main,
    run_directory,
)

log = logging.getLogger(__name__)

TASKS = {
    "pred_activity": (("finetune", "first"), ("eval", "second")),
    "atac": (("atac", "first"),),
    "kmer": (("audit", "second"),),
}
CHECKPOINT_FILES = {
    "finetune": "pred_activity_finetune.pt",
    "eval": "pred_activity_eval.pt",
    "atac": "atac.pt",
    "audit": "pred_activity_audit.pt",
}
ACTIVITY_ROLES = ("finetune", "eval", "audit")


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation of two 1-D arrays (nan when either is constant)."""
    if len(x) < 2 or np.std(x) == 0 or np.std(y) == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman rank correlation of two 1-D arrays."""
    if len(x) < 2:
        return float("nan")
    return float(stats.spearmanr(x, y).statistic)


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U), nan with a single class."""
    labels = labels.astype(bool)
    n_pos, n_neg = labels.sum(), (~labels).sum()
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = stats.rankdata(scores)
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def regression_metrics(pred: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """Per-cell Pearson and Spearman of ``pred`` vs ``target``, both ``(n, 3)``."""
    metrics: dict[str, float] = {}
    for k, cell in enumerate(ACTIVITY_COLUMNS):
        metrics[f"pearson_{cell}"] = pearson(pred[:, k], target[:, k])
        metrics[f"spearman_{cell}"] = spearman(pred[:, k], target[:, k])
    metrics["mse"] = float(np.mean((pred - target) ** 2))
    return metrics


def classification_metrics(logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Accuracy (at p = 0.5) and AUROC of logits ``(n,)`` vs 0/1 labels ``(n,)``."""
    return {
        "accuracy": float(np.mean((logits >= 0) == labels.astype(bool))),
        "auroc": auroc(logits, labels),
    }


class OracleModule(pl.LightningModule):
    """Fits an oracle network: MSE on the three activities, or BCE on the accessibility label."""

    def __init__(self, net: SequenceCNN, lr: float = 2e-3, weight_decay: float = 1e-4):
        super().__init__()
        self.net = net
        self.classify = isinstance(net, AccessibilityClassifier)
        self.lr, self.weight_decay = lr, weight_decay
        self.save_hyperparameters(
            {
                "net_class": type(net).__name__,
                "net_kwargs": dict(net.init_kwargs),
                "lr": lr,
                "weight_decay": weight_decay,
            }  # fmt: skip
        )
        self._collected: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {
            "val": [],
            "test": [],
        }

    def _target(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if not self.classify:
            return batch["activity"]
        if "accessible" not in batch:
            raise GempoError("oracle=atac: the data has no 'accessible' column (0/1 labels)")
        return batch["accessible"]

    def _loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.classify:
            return torch.nn.functional.binary_cross_entropy_with_logits(pred, target)
        return torch.nn.functional.mse_loss(pred, target)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self._loss(self.net(batch["tokens"]), self._target(batch))
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["tokens"]))
        return loss

    def _eval_step(self, stage: str, batch: dict[str, torch.Tensor]) -> None:
        pred, target = self.net(batch["tokens"]), self._target(batch)
        self.log(f"{stage}/loss", self._loss(pred, target), prog_bar=True,
                 batch_size=len(pred))  # fmt: skip
        self._collected[stage].append((pred.detach().float().cpu(), target.float().cpu()))

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._eval_step("val", batch)

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._eval_step("test", batch)

    def epoch_metrics(self, stage: str) -> dict[str, float]:
        """Metrics over everything collected for ``stage`` since the last call (then cleared)."""
        if not self._collected[stage]:
            return {}
        pred = torch.cat([p for p, _ in self._collected[stage]]).numpy()
        target = torch.cat([t for _, t in self._collected[stage]]).numpy()
        self._collected[stage].clear()
        if self.classify:
            return classification_metrics(pred, target)
        return regression_metrics(pred, target)

    def _log_epoch(self, stage: str) -> None:
        metrics = self.epoch_metrics(stage)
        if not self.trainer.sanity_checking:
            self.log_dict({f"{stage}/{k}": v for k, v in metrics.items()})

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val")

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer = torch.optim.AdamW(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        schedule = torch.optim.lr_scheduler.OneCycleLR(
            optimizer,
            max_lr=self.lr,
            total_steps=max(int(self.trainer.estimated_stepping_batches), 1),
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


def build_net(task: str, net_cfg: DictConfig | dict[str, Any]) -> SequenceCNN:
    """The network for ``task`` with the ``net`` config's size kwargs."""
    kwargs = OmegaConf.to_container(net_cfg) if isinstance(net_cfg, DictConfig) else dict(net_cfg)
    return AccessibilityClassifier(**kwargs) if task == "atac" else PredActivityOracle(**kwargs)


@torch.no_grad()
def fit_ridge(cfg: DictConfig, role: str, half: str, out: Path) -> dict[str, Any]:
    """Fit the k-mer ridge oracle (:class:`~dna.oracle.KmerRidgeOracle`, ``kmer.k``) on
    ``half`` in closed form: standardised counts, one eigendecomposition of their Gram matrix,
    the penalty of ``kmer.ridge`` (times the rows) with the lowest validation MSE. Returns what
    :func:`fit_one` returns (no epochs or steps)."""
    data: EnhancerDataModule = instantiate(cfg.data, half=half)
    data.setup()
    net = KmerRidgeOracle(k=int(cfg.kmer.k), seq_len=data.splits["train"].tokens.shape[1])
    start = time.time()
    train = data.splits["train"]
    chunks = range(0, len(train), 2048)
    counts = [net.counts(train.tokens[i : i + 2048]).double() for i in chunks]
    rows = len(train)
    mean = sum(c.sum(0) for c in counts) / rows
    scale = (sum(((c - mean) ** 2).sum(0) for c in counts) / rows).sqrt().clamp(min=1e-6)
    standardised = [(c - mean) / scale for c in counts]  # what the linear model reads
    del counts
    target = train.activity.double()
    bias = target.mean(0)
    gram = sum(x.T @ x for x in standardised)
    moment = sum(
        x.T @ (target[i : i + 2048] - bias) for x, i in zip(standardised, chunks, strict=True)
    )
    eigenvalues, eigenvectors = torch.linalg.eigh(gram)
    projected = eigenvectors.T @ moment
    net.mean.copy_(mean.float())
    net.scale.copy_(scale.float())
    net.bias.copy_(bias.float())
    validation = data.splits["val"]
    labels = validation.activity.numpy()
    by_penalty: dict[str, float] = {}
    best: tuple[float, torch.Tensor, np.ndarray] | None = None
    for penalty in cfg.kmer.ridge:
        weight = eigenvectors @ (projected / (eigenvalues + float(penalty) * rows)[:, None])
        net.weight.copy_(weight.float())
        predicted = predict(net, validation.tokens)
        by_penalty[str(penalty)] = float(((predicted - labels) ** 2).mean())
        if best is None or by_penalty[str(penalty)] < best[0]:
            best = (by_penalty[str(penalty)], weight, predicted)
    net.weight.copy_(best[1].float())
    seconds = time.time() - start
    metrics = {"validation": regression_metrics(best[2], labels)}
    if len(data.splits["test"]):
        test = data.splits["test"]
        metrics["test"] = regression_metrics(predict(net, test.tokens), test.activity.numpy())
    metrics["ridge_validation_mse"] = by_penalty
    return {
        "net": net.eval(),
        "metrics": metrics,
        "epochs": None,
        "steps": None,
        "train_seconds": round(seconds, 1),
        "rows": {k: len(v) for k, v in data.splits.items()},
        "best_checkpoint": None,
        "source": str(data.resolved_path()),
        "split_by": data.split_by,
    }


def fit_one(cfg: DictConfig, role: str, half: str, out: Path) -> dict[str, Any]:
    """Train one oracle on ``half``; returns its best network, metrics and bookkeeping."""
    data: EnhancerDataModule = instantiate(cfg.data, half=half)
    data.setup()
    module = OracleModule(build_net(cfg.task, cfg.net), lr=cfg.lr, weight_decay=cfg.weight_decay)
    checkpoint = ModelCheckpoint(
        dirpath=out / "checkpoints" / role, filename="best", monitor="val/loss", mode="min",
        save_last=True,
    )  # fmt: skip
    trainer = pl.Trainer(
        **OmegaConf.to_container(cfg.trainer),
        logger=[CSVLogger(out, name=role), TensorBoardLogger(out / "tensorboard", name=role)],
        callbacks=[checkpoint, EarlyStopping("val/loss", patience=cfg.early_stopping_patience)],
    )
    start = time.time()
    trainer.fit(module, datamodule=data)
    seconds = time.time() - start
    if checkpoint.best_model_path:
        best = torch.load(checkpoint.best_model_path, map_location="cpu", weights_only=True)
        module.load_state_dict(best["state_dict"])
    module.to("cpu")
    metrics = {"validation": _evaluate(module, data, "val")}
    if len(data.splits["test"]):
        metrics["test"] = _evaluate(module, data, "test")
    return {
        "net": module.net.eval(),
        "metrics": metrics,
        "epochs": trainer.current_epoch,
        "steps": trainer.global_step,
        "train_seconds": round(seconds, 1),
        "rows": {k: len(v) for k, v in data.splits.items()},
        "best_checkpoint": checkpoint.best_model_path,
        "source": str(data.resolved_path()),
        "split_by": data.split_by,
    }


@torch.no_grad()
def predict(net: torch.nn.Module, tokens: torch.Tensor, batch_size: int = 2048) -> np.ndarray:
    """Run ``net`` over tokens ``(n, L)`` in batches on the CPU; ``(n, ...)`` float64 array."""
    net.eval()
    outs = [net(tokens[i : i + batch_size]).double() for i in range(0, len(tokens), batch_size)]
    return torch.cat(outs).numpy()


def _evaluate(module: OracleModule, data: EnhancerDataModule, split: str) -> dict[str, float]:
    tensors = data.splits[split]
    pred = predict(module.net, tensors.tokens)
    if module.classify:
        return classification_metrics(pred, tensors.accessible.numpy())
    return regression_metrics(pred, tensors.activity.numpy())


def truth_metrics(cfg: DictConfig, nets: dict[str, torch.nn.Module]) -> dict[str, Any]:
    """Scores of each oracle against the simulator's noise-free truth on fresh sequences, and
    the agreement of the fine-tune and eval oracles (simulated world only)."""
    from dna.simulator import simulate_sequences, true_accessibility, true_activity

    seqs = simulate_sequences(cfg.truth_eval_size, seed=cfg.truth_eval_seed)
    tokens = encode(seqs)
    result: dict[str, Any] = {"num_sequences": len(seqs), "seed": cfg.truth_eval_seed}
    preds = {role: predict(net, tokens) for role, net in nets.items()}
    if "atac" in preds:
        prob = true_accessibility(seqs)
        result["atac"] = {
            "pearson_probability": pearson(1 / (1 + np.exp(-preds["atac"])), prob),
            **classification_metrics(preds["atac"], prob >= 0.5),
        }
    truth = true_activity(seqs) if set(ACTIVITY_ROLES) & preds.keys() else None
    for role in ACTIVITY_ROLES:
        if role in preds:
            result[role] = regression_metrics(preds[role], truth)
    if {"finetune", "eval"} <= preds.keys():
        agreement = regression_metrics(preds["finetune"], preds["eval"])
        result["agreement"] = {k: v for k, v in agreement.items() if k.startswith("pearson")}
    return result


def provenance(half: str, split_by: str, val_fraction: float) -> dict[str, str]:
    """What an oracle trained on ``half`` (``first`` or ``second``) was trained, validated and
    tested on, as the loader actually split the data (``split_by``: ``chromosome``, or
    ``random`` when the file has no usable ``chrom`` column)."""
    other = "second" if half == "first" else "first"
    by_chromosome = split_by == "chromosome"
    return {
        "split": "by chromosome"
        if by_chromosome
        else "random (the data has no usable chrom column)",
        "trained_on": half_name(half, split_by),
        "validated_on": "other chromosomes (chrX)"
        if by_chromosome
        else f"a random {val_fraction:.0%} of the rows",
        "tested_on": half_name(other, split_by),
    }


def export(cfg: DictConfig, runs: dict[str, dict[str, Any]], truth: dict[str, Any] | None) -> None:
    """Write compact checkpoints and update ``manifest.json`` in ``cfg.export_dir``."""
    folder = Path(cfg.export_dir)
    manifest_path = folder / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    manifest.setdefault("format", "gempo-oracle-v1")
    manifest.setdefault("oracles", {})
    data = OmegaConf.to_container(cfg.data)
    data.pop("_target_", None)
    for role, run in runs.items():
        file = CHECKPOINT_FILES[role]
        where = provenance(run["half"], run["split_by"], float(cfg.data.val_fraction))
        world = data_world(cfg.data.get("path"))
        meta = {
            "role": role,
            "trained_on": where["trained_on"],
            "world": world,
            "command": command_line(),
        }
        digest = save_oracle(run["net"], folder / file, meta)
        manifest["oracles"][role] = {
            "file": file,
            "class": type(run["net"]).__name__,
            "kwargs": run["net"].init_kwargs,
            "parameters": sum(p.numel() for p in run["net"].parameters()),
            "buffers": sum(b.numel() for b in run["net"].buffers()),  # the ridge's fit lives here
            "size_bytes": (folder / file).stat().st_size,
            "sha256": digest,
            "world": world,
            **where,
            "data": {**data, "rows": run["rows"], "file": Path(run["source"]).name},
            "command": command_line(),
            "epochs": run["epochs"],
            "steps": run["steps"],
            "train_seconds": run["train_seconds"],
            "metrics": {**run["metrics"], **({"truth": truth[role]} if truth else {})},
            "torch": torch.__version__,
        }
    if truth and "agreement" in truth:
        manifest["agreement_finetune_vs_eval"] = truth["agreement"]
    if truth:
        manifest["truth_eval"] = {"num_sequences": truth["num_sequences"], "seed": truth["seed"]}
    with atomic_output(manifest_path) as tmp:
        tmp.write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n")
    log.info("exported %s to %s", ", ".join(runs), folder)


def train_from_config(cfg: DictConfig) -> dict[str, Any]:
    """Train every oracle of ``cfg.task``; write metrics.json (and export when asked)."""
    if cfg.task not in TASKS:
        raise GempoError(f"task: expected one of {list(TASKS)}, got {cfg.task!r}")
    out = run_directory()
    overwrite = bool(cfg.get("overwrite", False))
    claim_run_dir(out, overwrite=overwrite)
    if cfg.get("export_dir"):
        files = [Path(cfg.export_dir) / CHECKPOINT_FILES[role] for role, _ in TASKS[cfg.task]]
        claim_export(files, overwrite)
    pl.seed_everything(cfg.seed, workers=True)
    runs: dict[str, dict[str, Any]] = {}
    for role, half in TASKS[cfg.task]:
        log.info("training the %s oracle on the %s half", role, half)  # split: manifest
        fit = fit_ridge if cfg.task == "kmer" else fit_one
        runs[role] = {**fit(cfg, role, half, out), "half": half}
    simulated = cfg.data.get("path") is None
    truth = truth_metrics(cfg, {r: v["net"] for r, v in runs.items()}) if simulated else None
    summary = {
        role: {k: v for k, v in run.items() if k not in ("net",)} for role, run in runs.items()
    }
    summary["truth"] = truth
    with atomic_output(out / "metrics.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2) + "\n")
    for role, run in runs.items():
        save_oracle(run["net"], out / CHECKPOINT_FILES[role], {"role": role})
    if cfg.get("export_dir"):
        export(cfg, runs, truth)
    log.info("metrics: %s", json.dumps(summary, indent=2))
    return summary


@hydra_main("dna_oracle")
def main(cfg: DictConfig) -> dict[str, Any]:
    """Train the oracles selected by ``oracle=`` (``python -m dna.oracle``)."""
    return train_from_config(cfg)
