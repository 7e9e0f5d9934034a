"""The published enhancer benchmark's oracles, loaded through gReLU (``pip install -e ".[grelu]"``).

The release has three ``grelu.lightning.LightningModel`` checkpoints: two Pred-Activity
regressors (``reward_oracle_ft.ckpt``, the fine-tuning reward, and ``reward_oracle_eval.ckpt``,
trained on the other chromosome half) with tasks HepG2, K562, SK-N-SH, and a binary ATAC
classifier over 7 cell lines (``binary_atac_cell_lines.ckpt``; HepG2 is output 1). gReLU models
take a one-hot ``(batch, 4, length)`` float (A, C, G, T) and return ``(batch, tasks, 1)``.
:func:`release_oracles` wraps them as this project's :class:`~dna.oracle.OracleSet` (config
``oracle=grelu``); the wrappers take tokens ``(batch, length)`` or one-hot ``(batch, 4, length)``
like the project's own oracles, and say they belong to the real world.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from dna.oracle import OracleSet, resolve_oracle_path
from dna.sequences import load_weights_only_first, oracle_input
from dna.worlds import REAL
from gempo.errors import GempoError

INSTALL_HINT = 'oracle=grelu needs gReLU: pip install -e ".[grelu]"'


def load_grelu_model(path: Path, map_location: str | torch.device = "cpu") -> nn.Module:
    """A ``grelu.lightning.LightningModel`` from its checkpoint file (resolved by
    :func:`~dna.oracle.resolve_oracle_path`), through gReLU, in eval mode."""
    try:
        from grelu.lightning import LightningModel
    except ImportError as err:
        raise GempoError(INSTALL_HINT) from err
    model = load_weights_only_first(
        lambda weights_only: LightningModel.load_from_checkpoint(
            path, map_location=map_location, weights_only=weights_only
        ),
        path,
        trusted=True,
    )
    return model.eval()


def task_indices(model: nn.Module, tasks: Sequence[int | str], where: str) -> list[int]:
    """Output indices of ``tasks``: integers as given, names looked up (case-insensitively) in
    the checkpoint's task list (``data_params["tasks"]["name"]``, when it was trained through
    gReLU)."""
    count = int(model.model.head.n_tasks)
    names = [str(n).lower() for n in (model.data_params.get("tasks") or {}).get("name", [])]
    indices = []
    for task in tasks:
        if isinstance(task, str) and not task.lstrip("-").isdigit():
            if task.lower() not in names:
                raise GempoError(f"{where}: no task {task!r} among the model's tasks {names}")
            indices.append(names.index(task.lower()))
        elif not 0 <= int(task) < count:
            raise GempoError(f"{where}: task {task} out of range (the model has {count} outputs)")
        else:
            indices.append(int(task))
    return indices


class GreluOracle(nn.Module):
    """A gReLU model as a Pred-Activity oracle: tokens ``(batch, length)`` or one-hot
    ``(batch, 4, length)`` -> the chosen tasks' predictions ``(batch, len(tasks))`` (after the
    model's activation, as gReLU predicts them)."""

    world = REAL

    def __init__(self, path: str | Path, tasks: Sequence[int | str] = (0, 1, 2)) -> None:
        super().__init__()
        path = resolve_oracle_path(path)
        self.model = load_grelu_model(path)
        self.source = str(path)
        self.tasks = task_indices(self.model, tasks, self.source)

    def outputs(self, x: Tensor, logits: bool = False) -> Tensor:
        """The chosen tasks' outputs ``(batch, len(tasks))``; ``logits``: before the activation."""
        out = self.model(oracle_input(x), logits=logits)
        if out.dim() != 3 or out.shape[-1] != 1:
            raise GempoError(
                f"{self.source}: expected outputs (batch, tasks, 1), got {tuple(out.shape)}"
            )
        return out[:, self.tasks, 0]

    def forward(self, x: Tensor) -> Tensor:
        return self.outputs(x)


class GreluAccessibility(GreluOracle):
    """A gReLU binary classifier's one task as the accessibility classifier: ``forward`` gives
    logits ``(batch,)``, ``predict_proba`` probabilities."""

    def __init__(self, path: str | Path, task: int | str = 1) -> None:
        super().__init__(path, tasks=[task])

    def forward(self, x: Tensor) -> Tensor:
        return self.outputs(x, logits=True)[:, 0]

    def predict_proba(self, x: Tensor) -> Tensor:
        """Probability of being accessible, ``(batch,)``."""
        return torch.sigmoid(self(x))

    def predict_accessible(self, x: Tensor, threshold: float = 0.5) -> Tensor:
        """Bool ``(batch,)``: predicted accessible (the ATAC-Acc criterion)."""
        return self.predict_proba(x) >= threshold


def release_oracles(
    finetune: str | Path,
    eval: str | Path,  # noqa: A002 - the role's name
    atac: str | Path | None = None,
    activity_tasks: Sequence[int | str] = (0, 1, 2),
    atac_task: int | str = 1,
    device: str | torch.device = "cpu",
) -> OracleSet:
    """The release's three gReLU checkpoints as an :class:`~dna.oracle.OracleSet`.

    ``activity_tasks``: the Pred-Activity outputs in this project's order (HepG2, K562, SK-N-SH),
    as indices or task names; ``atac_task``: the ATAC classifier's HepG2 output."""
    return OracleSet(
        finetune=GreluOracle(finetune, activity_tasks),
        eval=GreluOracle(eval, activity_tasks),
        atac=None if atac is None else GreluAccessibility(atac, atac_task),
        device=device,
    )
