"""Atomic, verified checkpoints and one-line errors for corrupted ones."""

from __future__ import annotations

import pytest
import torch

from control import checkpoint as ckpt
from gempo.errors import GempoError


def _state(step: int) -> dict:
    return {
        "config": "seed: 0\n",
        "env_step": step,
        "agent": {"w": torch.ones(3) * step},
        "rng": {},
    }


def test_saving_keeps_last_and_previous_and_resolves_run_directories(tmp_path):
    directory = tmp_path / "run" / "checkpoints"
    ckpt.save_checkpoint(_state(1), directory)
    ckpt.save_checkpoint(_state(2), directory)
    assert ckpt.load_checkpoint(tmp_path / "run")["env_step"] == 2
    assert ckpt.load_checkpoint(directory / ckpt.PREVIOUS)["env_step"] == 1
    assert not (directory / f"{ckpt.LAST}.tmp").exists()
    with pytest.raises(GempoError, match="does not exist"):
        ckpt.load_checkpoint(tmp_path / "missing")


def test_a_corrupted_checkpoint_is_a_one_line_error_naming_the_previous_one(tmp_path):
    directory = tmp_path / "checkpoints"
    ckpt.save_checkpoint(_state(1), directory)
    ckpt.save_checkpoint(_state(2), directory)
    last = directory / ckpt.LAST
    last.write_bytes(last.read_bytes()[:100])
    with pytest.raises(GempoError, match=r"corrupted or unreadable .*previous\.ckpt") as err:
        ckpt.load_checkpoint(last)
    assert "\n" not in str(err.value)
    torch.save({"something": "else"}, last)
    with pytest.raises(GempoError, match="not a control checkpoint"):
        ckpt.load_checkpoint(last)
    assert ckpt.load_checkpoint(directory / ckpt.PREVIOUS)["env_step"] == 1


def test_a_write_that_does_not_read_back_never_replaces_the_last_good_checkpoint(
    tmp_path, monkeypatch
):
    directory = tmp_path / "checkpoints"
    ckpt.save_checkpoint(_state(1), directory)
    good = (directory / ckpt.LAST).read_bytes()
    monkeypatch.setattr(ckpt.torch, "save", lambda obj, path: open(path, "wb").write(b"garbage"))
    with pytest.raises(GempoError, match="corrupted"):
        ckpt.save_checkpoint(_state(2), directory)
    assert (directory / ckpt.LAST).read_bytes() == good
