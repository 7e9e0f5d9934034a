"""Atomic, verified checkpoints: ``last.ckpt`` plus the previous good one, ``previous.ckpt``.

A checkpoint is written to a temporary file, loaded back and checked, and only then moved
into place (``os.replace``); the checkpoint it replaces becomes ``previous.ckpt``. A crash or
a bad write therefore never destroys the last good checkpoint.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from gempo.errors import GempoError

LAST = "last.ckpt"
PREVIOUS = "previous.ckpt"
REQUIRED_KEYS = ("format", "config", "env_step", "agent", "rng")
FORMAT = "gempo-control-1"


def _read(path: Path) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any failure to read is a corrupted file
        raise GempoError(
            f"checkpoint {path} is corrupted or unreadable ({type(err).__name__}); "
            f"resume from {path.with_name(PREVIOUS)} instead"
        ) from None
    missing = [k for k in REQUIRED_KEYS if not isinstance(state, dict) or k not in state]
    if missing or state.get("format") != FORMAT:
        raise GempoError(
            f"checkpoint {path} is not a control checkpoint "
            f"(missing {', '.join(missing) or 'format'}); "
            f"resume from {path.with_name(PREVIOUS)} instead"
        )
    return state


def save_checkpoint(state: dict, directory: Path) -> Path:
    """Write ``state`` as ``directory/last.ckpt`` atomically after verifying a reload."""
    directory.mkdir(parents=True, exist_ok=True)
    state = {"format": FORMAT, **state}
    last, tmp = directory / LAST, directory / f"{LAST}.tmp"
    torch.save(state, tmp)
    reloaded = _read(tmp)
    if reloaded["env_step"] != state["env_step"]:
        raise RuntimeError(f"checkpoint {tmp} did not read back; keeping {last}")
    if last.exists():
        os.replace(last, directory / PREVIOUS)
    os.replace(tmp, last)
    return last


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """A checkpoint file, or a run directory whose ``checkpoints/last.ckpt`` is meant."""
    path = Path(path).expanduser()
    if path.is_dir():
        path = path / "checkpoints" / LAST
    if not path.is_file():
        raise GempoError(f"checkpoint {path} does not exist; pass a .ckpt file or a run directory")
    return path


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Read and check a checkpoint (file or run directory); :class:`GempoError` when it is
    missing or corrupted."""
    return _read(resolve_checkpoint(path))
