"""Worlds, and the guard against mixing them.

The DNA pipeline runs in one of two worlds: the embedded **simulated** MPRA (``data=simulated``,
whose simulator is the ground truth) or a **real** data file (``data=gosai data.path=...``). Every
file a run reads says which world it belongs to: the data by its option, an oracle or generator
checkpoint by ``meta.world`` (written by ``dna.oracle``, ``dna.pretrain`` and ``dna.finetune``),
the shipped assets by their ``manifest.json`` (simulated-world files), the release's gReLU and
MDLM checkpoints by being the release (real world). A module built by a user's ``_target_`` and
a file that records no world are not checked.

:func:`check_worlds` stops a run that mixes them, in one line that says what to pass instead.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gempo.errors import GempoError

SIMULATED = "simulated"
REAL = "real"
OPTIONAL_PARTS = ("oracle.atac", "oracle.audit")  # a run may go without these

_FIX = {
    REAL: (
        "for real data pass oracles and a generator of the real world: the release's files "
        "(oracle=grelu oracle.finetune=... oracle.eval=... oracle.atac=... model=drakes_release "
        "pretrained=/path/pretrained.ckpt, see docs/real_benchmark.md) or your own, trained on "
        "this data (python -m dna.oracle data=gosai data.path=...)"
    ),
    SIMULATED: (
        "these were trained on real data: pass that data (data=gosai data.path=/path/to/it), or "
        "leave oracle=/pretrained= at their defaults for the simulated world"
    ),
}


def data_world(path: str | Path | None) -> str:
    """The world of the configured data: simulated without a file, real with one."""
    return SIMULATED if path in (None, "", "None", "null") else REAL


def shipped_world(path: Path, assets_dir: Path) -> str | None:
    """The world a shipped file's ``manifest.json`` gives it (the oracles' manifest lists files
    under ``oracles``, the generator's by name), or ``None`` for a file that is not shipped in
    ``assets_dir`` or that its manifest does not place."""
    manifest_path = assets_dir / "manifest.json"
    if not path.resolve().is_relative_to(assets_dir.resolve()) or not manifest_path.is_file():
        return None
    manifest = json.loads(manifest_path.read_text())
    entries = manifest.get("oracles", manifest)
    for key, entry in entries.items():
        if isinstance(entry, dict) and path.name in (key, entry.get("file")):
            return entry.get("world")
    return None


def check_worlds(data: str, oracles: Any, generator: Any | None, length: int) -> None:
    """Raise a one-line :class:`GempoError` when the run's parts do not belong together.

    ``data``: the data's world (:func:`data_world`); ``oracles``: an object with ``finetune``,
    ``eval``, ``atac`` and optionally ``audit`` (``atac`` and ``audit`` may be ``None``);
    ``generator``: the pretrained generator (or ``None``); ``length``: the run's sequence
    length (the data's rows are read at it). Checked: every part that knows its world is of
    the data's world; the fine-tune and eval oracles are two models (not one file or one
    module); every part works on ``length``-bp sequences.
    """
    parts = {
        "oracle.finetune": oracles.finetune,
        "oracle.eval": oracles.eval,
        "oracle.atac": oracles.atac,
        "oracle.audit": getattr(oracles, "audit", None),
        "pretrained": generator,
    }
    for option, part in parts.items():
        world = getattr(part, "world", None)
        if world is not None and world != data:
            drop = f" ({option}=null runs without it)" if option in OPTIONAL_PARTS else ""
            raise GempoError(
                f"{option} belongs to the {world} world but the data is {data}; {_FIX[data]}{drop}"
            )
    source = getattr(oracles.finetune, "source", None)
    same_file = source is not None and source == getattr(oracles.eval, "source", None)
    if oracles.finetune is oracles.eval or same_file:
        raise GempoError(
            "oracle.finetune and oracle.eval are the same model "
            f"({getattr(oracles.eval, 'source', 'one module')}); the eval oracle must be another "
            "model, trained on the other chromosome half (oracle.eval=...)"
        )
    for option, part in parts.items():
        have = getattr(part, "length", None) or getattr(part, "seq_len", None)
        if have is not None and int(have) != int(length):
            raise GempoError(
                f"{option} works on {have}-bp sequences but the data's are {length} bp; pass a "
                f"{length}-bp {'generator' if option == 'pretrained' else 'oracle'} or the "
                "matching data"
            )
