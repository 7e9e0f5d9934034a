"""User-facing errors: one clear line, no traceback from deep inside torch."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from omegaconf import DictConfig, OmegaConf

F = TypeVar("F", bound=Callable[..., object])


class GempoError(ValueError):
    """Bad input or configuration. The message names the file/field/value and what was expected."""


def find_user_error(err: BaseException) -> GempoError | None:
    """The :class:`GempoError` behind ``err`` (Hydra's ``instantiate`` wraps it), if any."""
    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, GempoError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def exit_on_user_error(main: F) -> F:
    """Wrap a command-line entry point so a :class:`GempoError` prints one line and exits 2."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except Exception as err:  # noqa: BLE001 - re-raised unless it is a user error
            user_error = find_user_error(err)
            if user_error is None:
                raise
            print(f"error: {user_error}", file=sys.stderr)
            sys.exit(2)

    return wrapper  # type: ignore[return-value]


def check_group_choices(overrides: Sequence[str], config_dir: Path) -> None:
    """One-line error for a command-line choice of a config group that does not exist
    (``oracle=nope``), which Hydra would report in several lines before the app starts.

    ``overrides``: the command-line arguments; ``key=a,b`` (multirun) checks every value;
    ``config_dir``: the Hydra config folder whose sub-folders are the groups.
    """
    for arg in overrides:
        if "=" not in arg or arg.startswith(("-", "+", "~", "hydra")):
            continue
        key, values = arg.split("=", 1)
        group = config_dir / key
        if "." in key or not group.is_dir():
            continue
        options = sorted(p.stem for p in group.glob("*.yaml"))
        for value in values.split(","):
            if value and value != "null" and not (group / f"{value}.yaml").is_file():
                raise GempoError(
                    f"{key}={value}: unknown {key} config; expected one of {', '.join(options)}"
                )


def config_number(cfg: DictConfig, key: str, kind: type = float) -> Any:
    """``cfg``'s value at ``key`` (dotted) as a ``kind`` (int or float); a one-line
    :class:`GempoError` naming the key when it is not one (``total_steps=abc``, ``2.5`` for an
    integer)."""
    value = OmegaConf.select(cfg, key)
    try:
        number = kind(value)
    except (TypeError, ValueError):
        number = None
    if number is None or isinstance(value, bool) or (kind is int and number != value):
        raise GempoError(
            f"{key} must be {'an integer' if kind is int else 'a number'}, got {value!r}"
        )
    return number


HYDRA_OWN = (".hydra",)
"""What Hydra itself writes into a run folder before the app starts (plus ``*.log`` files)."""


def claim_run_dir(
    run_dir: Path, resume: bool = False, overwrite: bool = False, resume_hint: str = "resume=true"
) -> None:
    """Stop with one line when ``run_dir`` already holds another run's outputs, unless the run
    continues it (``resume``) or the user said ``overwrite=true``.

    Hydra's own files (``.hydra/``, ``*.log``) do not count: Hydra writes them before any app
    code runs, so a fresh run folder always has them. A data-parallel worker (``RANK`` or
    ``LOCAL_RANK`` above 0) does not check: rank 0 claimed the folder and is writing to it.
    ``resume_hint``: how the app continues a run, for the message.
    """
    worker = any(int(os.environ.get(key, 0)) > 0 for key in ("RANK", "LOCAL_RANK"))
    if resume or overwrite or worker or not run_dir.is_dir():
        return
    taken = sorted(
        p.name for p in run_dir.iterdir() if p.name not in HYDRA_OWN and p.suffix != ".log"
    )
    if taken:
        shown = ", ".join(taken[:4]) + (", ..." if len(taken) > 4 else "")
        raise GempoError(
            f"{run_dir} already holds another run's outputs ({shown}); pass {resume_hint} to "
            "continue that run, overwrite=true to replace its files, or hydra.run.dir=<a new "
            "folder>"
        )


def claim_export(
    files: Sequence[Path], overwrite: bool = False, option: str = "export_dir"
) -> None:
    """Stop with one line when writing ``files`` would replace existing ones (shipped assets),
    unless the user said ``overwrite=true``."""
    existing = [str(f) for f in files if f.exists()]
    if existing and not overwrite:
        raise GempoError(
            f"{option}: {', '.join(existing)} already exist(s); pass overwrite=true to replace "
            "them, or another folder"
        )
