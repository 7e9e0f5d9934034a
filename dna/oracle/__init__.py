"""Pred-Activity oracles and the HepG2 accessibility classifier: models, checkpoints, loading.

``python -m dna.oracle`` trains them (``dna/oracle/__main__.py`` runs
:func:`dna.oracle_training.main`, Hydra app, config ``configs/dna_oracle.yaml``):

    python -m dna.oracle                          # both Pred-Activity oracles (one per half)
    python -m dna.oracle oracle=atac              # the accessibility classifier
    python -m dna.oracle oracle=kmer              # the audit oracle: k-mer ridge regression
    python -m dna.oracle data=gosai data.path=/data/dataset.csv.gz oracle/net@net=large

Oracle inputs are tokens ``(batch, 200)`` with values 0..3 (A, C, G, T), or a one-hot/relaxed
float tensor ``(batch, 4, 200)`` (for gradients), on the module's device.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dna.data import ACTIVITY_COLUMNS
from dna.metrics import kmer_index
from dna.sequences import (
    SEQ_LEN,
    VOCAB_SIZE,
    atomic_output,
    find_checkpoint,
    oracle_input,
    read_checkpoint,
)
from dna.worlds import shipped_world
from gempo.errors import GempoError
from gempo.nets import freeze

PACKAGE_DIR = Path(__file__).resolve().parents[1]  # dna/
ASSETS_DIR = PACKAGE_DIR / "assets" / "oracles"
SHIPPED_ORACLES: dict[str, Path] = {
    "finetune": ASSETS_DIR / "pred_activity_finetune.pt",
    "eval": ASSETS_DIR / "pred_activity_eval.pt",
    "atac": ASSETS_DIR / "atac.pt",
    "audit": ASSETS_DIR / "pred_activity_audit.pt",
}
CHECKPOINT_FORMAT = "gempo-oracle-v1"


class SequenceCNN(nn.Module):
    """A small convolutional network over one-hot DNA, ``(batch, 4, L) -> (batch, out_features)``.

    stem: Conv(k=first_kernel) + MaxPool(4) + BN + ReLU; then ``num_blocks`` x [Conv(k=kernel) +
    MaxPool(2) + BN + ReLU] (pooling first makes normalisation 4x cheaper on a CPU); flatten
    (keeps position: MPRA activity depends on where sites are); Linear(hidden) + ReLU + Dropout +
    Linear(out_features).
    """

    def __init__(
        self,
        out_features: int,
        seq_len: int = SEQ_LEN,
        channels: int = 64,
        first_kernel: int = 15,
        num_blocks: int = 2,
        kernel: int = 5,
        hidden: int = 256,
        dropout: float = 0.2,
    ):
        super().__init__()
        self.init_kwargs: dict[str, Any] = {
            "seq_len": seq_len, "channels": channels, "first_kernel": first_kernel,
            "num_blocks": num_blocks, "kernel": kernel, "hidden": hidden, "dropout": dropout,
        }  # fmt: skip
        self.seq_len = seq_len
        layers: list[nn.Module] = [
            nn.Conv1d(VOCAB_SIZE, channels, first_kernel, padding="same"),
            nn.MaxPool1d(4),
            nn.BatchNorm1d(channels),
            nn.ReLU(),
        ]
        length = seq_len // 4
        for _ in range(num_blocks):
            layers += [
                nn.Conv1d(channels, channels, kernel, padding="same"),
                nn.MaxPool1d(2),
                nn.BatchNorm1d(channels),
                nn.ReLU(),
            ]
            length //= 2
        if length < 1:
            raise GempoError(f"oracle net: seq_len {seq_len} is too short for {num_blocks} blocks")
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(channels * length, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, out_features),
        )

    def _one_hot(self, x: torch.Tensor) -> torch.Tensor:
        """Tokens ``(batch, L)`` or float ``(batch, 4, L)`` -> float ``(batch, 4, L)``."""
        hot = oracle_input(x)
        if hot.shape[-1] != self.seq_len:
            raise GempoError(f"oracle: sequence length {hot.shape[-1]}, expected {self.seq_len}")
        return hot.to(self.head[1].weight.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(batch, L)`` tokens or ``(batch, 4, L)`` one-hot -> ``(batch, out_features)``."""
        return self.head(self.features(self._one_hot(x)))


class PredActivityOracle(SequenceCNN):
    """Sequence -> predicted activity ``(batch, 3)`` in (hepg2, k562, sknsh), the MPRA scale."""

    OUTPUTS = ACTIVITY_COLUMNS

    def __init__(self, **kwargs: Any):
        super().__init__(out_features=len(ACTIVITY_COLUMNS), **kwargs)


class AccessibilityClassifier(SequenceCNN):
    """Sequence -> HepG2 accessibility (ATAC peak) logit ``(batch,)``."""

    def __init__(self, **kwargs: Any):
        super().__init__(out_features=1, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Tokens ``(batch, L)`` (or one-hot ``(batch, 4, L)``) -> logits ``(batch,)``."""
        return super().forward(x).squeeze(-1)

    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        """Probability of being accessible, ``(batch,)``."""
        return torch.sigmoid(self(x))

    def predict_accessible(self, x: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
        """Bool ``(batch,)``: predicted accessible (the ATAC-Acc criterion)."""
        return self.predict_proba(x) >= threshold


class KmerRidgeOracle(nn.Module):
    """Sequence -> activity ``(batch, 3)`` from its k-mer counts alone: a linear (ridge) model
    on the counts of every k-mer, a k-mer and its reverse complement counted together. Built
    unlike the CNN oracles (no positions, no convolutions, a closed-form fit:
    :func:`dna.oracle_training.fit_ridge`), it is the audit oracle: a third opinion on designs.
    Standardisation and weights are buffers, set by the fit."""

    OUTPUTS = ACTIVITY_COLUMNS

    def __init__(self, k: int = 6, seq_len: int = SEQ_LEN):
        super().__init__()
        if k < 1:
            raise GempoError(f"kmer oracle: k must be >= 1, got {k}")
        self.init_kwargs = {"k": k, "seq_len": seq_len}
        self.k, self.seq_len = k, seq_len
        features = VOCAB_SIZE**k
        self.register_buffer("mean", torch.zeros(features))
        self.register_buffer("scale", torch.ones(features))
        self.register_buffer("weight", torch.zeros(features, len(ACTIVITY_COLUMNS)))
        self.register_buffer("bias", torch.zeros(len(ACTIVITY_COLUMNS)))

    def counts(self, x: torch.Tensor) -> torch.Tensor:
        """Tokens ``(batch, L)`` (or one-hot ``(batch, 4, L)``, read by argmax) -> k-mer counts
        ``(batch, 4**k)``, each k-mer's column holding its and its reverse complement's."""
        tokens = x.argmax(dim=1) if x.is_floating_point() else x.long()
        if tokens.shape[-1] != self.seq_len:
            raise GempoError(f"oracle: sequence length {tokens.shape[-1]}, expected {self.seq_len}")
        forward = kmer_index(tokens, self.k)
        reverse = kmer_index(tokens, self.k, reverse_complement=True)
        counts = torch.zeros(len(tokens), VOCAB_SIZE**self.k, device=tokens.device)
        ones = torch.ones_like(forward, dtype=counts.dtype)
        return counts.scatter_add_(1, forward, ones).scatter_add_(1, reverse, ones)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Standardised counts ``(batch, 4**k)``: what the linear model reads."""
        return (self.counts(x) - self.mean) / self.scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(batch, L)`` tokens or ``(batch, 4, L)`` one-hot -> ``(batch, 3)``."""
        return self.features(x) @ self.weight + self.bias


ORACLE_CLASSES: dict[str, type[nn.Module]] = {
    "PredActivityOracle": PredActivityOracle,
    "AccessibilityClassifier": AccessibilityClassifier,
    "KmerRidgeOracle": KmerRidgeOracle,
}


def resolve_oracle_path(path: str | Path) -> Path:
    """Absolute paths as given; a relative path is tried against the working directory, then
    against the ``dna`` package (so ``assets/oracles/atac.pt`` finds the shipped file)."""
    return find_checkpoint(path, "oracle")


def save_oracle(model: nn.Module, path: str | Path, meta: dict[str, Any] | None = None) -> str:
    """Save weights + constructor kwargs (float32 state_dict) atomically; returns the sha256."""
    payload = {
        "format": CHECKPOINT_FORMAT,
        "class": type(model).__name__,
        "kwargs": dict(model.init_kwargs),
        "state_dict": {
            k: v.detach().cpu().float() if v.is_floating_point() else v.cpu()
            for k, v in model.state_dict().items()
        },  # fmt: skip
        "meta": meta or {},
    }
    with atomic_output(path) as tmp:
        torch.save(payload, tmp)
        digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
    return digest


def _build(class_name: str, kwargs: dict[str, Any], where: Path) -> nn.Module:
    if class_name not in ORACLE_CLASSES:
        raise GempoError(
            f"{where}: unknown oracle class {class_name!r}; expected {list(ORACLE_CLASSES)}"
        )
    return ORACLE_CLASSES[class_name](**kwargs)


def load_oracle(path: str | Path, map_location: str | torch.device = "cpu") -> nn.Module:
    """Load an oracle checkpoint (this project's compact format or a ``dna.oracle`` Lightning
    ``.ckpt``) into a frozen module in eval mode; ``world`` (:mod:`dna.worlds`) and ``source``
    (the file) are noted on it."""
    path = resolve_oracle_path(path)
    payload = read_checkpoint(path, map_location)
    if payload.get("format") == CHECKPOINT_FORMAT:
        model = _build(payload["class"], payload["kwargs"], path)
        state = payload["state_dict"]
    elif "hyper_parameters" in payload and "net_class" in payload["hyper_parameters"]:
        hparams = payload["hyper_parameters"]
        model = _build(hparams["net_class"], dict(hparams["net_kwargs"]), path)
        state = {
            k[len("net.") :]: v for k, v in payload["state_dict"].items() if k.startswith("net.")
        }
    else:
        raise GempoError(
            f"{path}: not an oracle checkpoint (expected format {CHECKPOINT_FORMAT!r} or a "
            "dna.oracle Lightning checkpoint)"
        )
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        first = str(err).splitlines()[1].strip() if "\n" in str(err) else str(err)
        raise GempoError(
            f"{path}: weights do not match the recorded architecture ({first})"
        ) from err
    model.world = (payload.get("meta") or {}).get("world") or shipped_world(path, ASSETS_DIR)
    model.source = str(path)
    return freeze(model.to(map_location))


def _as_module(oracle: str | Path | nn.Module | None) -> nn.Module | None:
    if oracle is None or isinstance(oracle, nn.Module):
        return None if oracle is None else freeze(oracle)
    return load_oracle(oracle)


class OracleSet:
    """The oracles of one world: ``finetune`` (the reward), ``eval`` (evaluation only; trained on
    the other chromosome half), ``atac`` (HepG2 accessibility classifier) and ``audit``
    (evaluation only: a differently built oracle, the shipped one a k-mer ridge regression on
    the eval half, ``oracle.audit`` of ``configs/oracle/pred_activity.yaml``); ``atac`` and
    ``audit`` may be ``None`` (``audit`` is by default).

    Each is a checkpoint path (see :func:`resolve_oracle_path`) or an ``nn.Module`` (a user's model,
    built by Hydra from a ``_target_`` node); all are frozen and in eval mode. Defaults: the
    shipped oracles in ``dna/assets/oracles``.
    """

    def __init__(
        self,
        finetune: str | Path | nn.Module = SHIPPED_ORACLES["finetune"],
        eval: str | Path | nn.Module = SHIPPED_ORACLES["eval"],  # noqa: A002 - the role's name
        atac: str | Path | nn.Module | None = SHIPPED_ORACLES["atac"],
        audit: str | Path | nn.Module | None = None,
        device: str | torch.device = "cpu",
    ):
        self.finetune: nn.Module = _as_module(finetune)
        self.eval: nn.Module = _as_module(eval)
        self.atac: nn.Module | None = _as_module(atac)
        self.audit: nn.Module | None = _as_module(audit)
        self.to(device)

    def to(self, device: str | torch.device) -> OracleSet:
        """Move every oracle to ``device``; returns ``self``."""
        for module in (self.finetune, self.eval, self.atac, self.audit):
            if module is not None:
                module.to(device)
        return self
