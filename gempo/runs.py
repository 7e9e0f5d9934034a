"""What every entry point does around its work: the run folder (claimed, never silently
overwritten) and resume lookup, Lightning loggers and progress bar, atomic JSON and file
output, the command line that started the run, one-line checks of numeric options and config
group choices, :func:`hydra_main`, the entry-point decorator of every app, and
:func:`compose_config`, the same config composed without the app."""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import shlex
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import hydra
import pandas as pd
import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import TQDMProgressBar
from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger

from gempo.errors import GempoError, exit_on_user_error

log = logging.getLogger(__name__)

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
"""The Hydra config folder of every app (one group per sub-folder)."""


def compose_config(config_name: str, overrides: Sequence[str] = ()) -> DictConfig:
    """``configs/<config_name>.yaml`` composed with ``overrides``, as the command line would,
    for scripts and tests that build a run's config without starting the app."""
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name=config_name, overrides=list(overrides))


def hydra_main(
    config_name: str, precheck: Callable[[Sequence[str]], None] | None = None
) -> Callable[[Callable[[DictConfig], Any]], Callable[[], Any]]:
    """Turn ``task(cfg)`` into the app's ``main()``: the command line's config-group choices
    (and ``precheck``, if given) are checked first, with one line on a bad one; then Hydra
    composes ``configs/<config_name>.yaml`` with the overrides and runs ``task``, whose
    :class:`GempoError` becomes one line and exit code 2."""

    def decorate(task: Callable[[DictConfig], Any]) -> Callable[[], Any]:
        app = hydra.main(config_path=str(CONFIG_DIR), config_name=config_name, version_base="1.3")(
            exit_on_user_error(task)
        )

        @functools.wraps(task)
        def main() -> Any:
            exit_on_user_error(check_group_choices)(sys.argv[1:])
            if precheck is not None:
                exit_on_user_error(precheck)(sys.argv[1:])
            return app()

        return main

    return decorate


def run_directory() -> Path:
    """Hydra's output directory for this run (the working directory outside Hydra)."""
    if HydraConfig.initialized():
        return Path(HydraConfig.get().runtime.output_dir)
    return Path.cwd()


def resume_checkpoint(resume: bool | str | None, run_dir: Path) -> str | None:
    """The checkpoint to resume from: ``true`` -> ``<run_dir>/checkpoints/last.ckpt`` (a fresh
    start when there is none yet), a path -> that file, ``false``/``null`` -> none."""
    if resume is None or resume is False or str(resume).lower() in ("false", "none", "null", ""):
        return None
    if resume is True or str(resume).lower() == "true":
        last = run_dir / "checkpoints" / "last.ckpt"
        if last.is_file():
            return str(last)
        log.warning("resume=true but %s does not exist yet; starting from scratch", last)
        return None
    path = Path(str(resume)).expanduser()
    if not path.is_file():
        raise GempoError(f"resume={resume!r}: checkpoint file not found")
    return str(path)


def run_loggers(run_dir: Path, resume_from: str | None = None) -> list[pl.loggers.Logger]:
    """A CSV logger (``logs/csv/metrics.csv``) and a TensorBoard logger under ``run_dir/logs``.

    When resuming, the CSV rows logged before the checkpoint's step are kept (Lightning's CSV
    logger would delete the file), so ``metrics.csv`` reads as one uninterrupted run.
    """
    csv_logger = CSVLogger(run_dir, name="logs", version="csv")
    earlier = Path(csv_logger.log_dir) / "metrics.csv"
    if resume_from is not None and earlier.is_file():
        step = torch.load(resume_from, map_location="cpu", weights_only=False)["global_step"]
        frame = pd.read_csv(earlier)
        writer = csv_logger.experiment  # (deletes the old file)
        for row in frame[frame["step"] < step].to_dict("records"):
            values = {k: v for k, v in row.items() if k != "step" and pd.notna(v)}
            writer.log_metrics(values, int(row["step"]))
    return [
        csv_logger,
        TensorBoardLogger(run_dir, name="logs", version="tensorboard", default_hp_metric=False),
    ]


def progress_bar(trainer_cfg: DictConfig, refresh_rate: int) -> list[TQDMProgressBar]:
    """A progress bar callback, unless ``trainer.enable_progress_bar`` is false."""
    return [TQDMProgressBar(refresh_rate)] if trainer_cfg.get("enable_progress_bar", True) else []


class ProgressLog(pl.Callback):
    """Write a line to the run's log every ``every`` optimizer steps and at the last one: the
    step (of ``trainer.max_steps``), the latest values of ``keys`` (logged metrics) and an ETA.

    The rate behind the ETA is measured from the first logged step on, so the set-up before
    training (data, oracles, the first batch) does not make it optimistic or pessimistic. With
    ``trainer.max_time`` only and no step budget, the line has no ETA.
    """

    def __init__(self, every: int, keys: Sequence[str]) -> None:
        if every < 1:
            raise GempoError(f"log_every must be >= 1, got {every}")
        self.every = every
        self.keys = list(keys)
        self._start: tuple[int, float] | None = None  # (step, time) of the first logged step

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        step, total = trainer.global_step, trainer.max_steps
        last = total > 0 and step >= total
        if not trainer.is_global_zero or step == 0 or not (last or step % self.every == 0):
            return
        now = time.monotonic()
        if self._start is None:
            self._start = (step, now)
        first_step, started = self._start
        metrics = trainer.callback_metrics
        values = ", ".join(
            f"{key} {float(metrics[key]):.4g}" for key in self.keys if key in metrics
        )
        line = f"step {step}" + (f"/{total} ({100 * step / total:.0f}%)" if total > 0 else "")
        if values:
            line += f", {values}"
        if total > 0 and step > first_step:
            rate = (step - first_step) / (now - started)
            line += f", ETA {format_seconds((total - step) / rate)}"
        log.info(line)


def format_seconds(seconds: float) -> str:
    """``3725.0`` -> ``'1h02m'``, ``95.0`` -> ``'1m35s'``."""
    seconds = max(int(round(seconds)), 0)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


@contextlib.contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it replaces ``path`` atomically.

    Readers never see a half-written file, and a failed write leaves the old file in place.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    os.chmod(tmp, 0o644)  # mkstemp creates 0600; the result is an ordinary readable file
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_json(path: Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` as indented JSON atomically."""
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return path


def command_line() -> str:
    """The command that started this process, as one shell line."""
    spec = getattr(sys.modules["__main__"], "__spec__", None)
    module = None if spec is None else spec.name.removesuffix(".__main__")  # a package: its name
    program = f"python -m {module}" if module else f"python {sys.argv[0]}"
    return " ".join([program, *(shlex.quote(a) for a in sys.argv[1:])])


def check_group_choices(overrides: Sequence[str], config_dir: Path = CONFIG_DIR) -> None:
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


def check_minimums(cfg: DictConfig, minimums: dict[str, int]) -> None:
    """A one-line :class:`GempoError` naming the first integer option (dotted key) that is not
    an integer or lies below its minimum."""
    for key, minimum in minimums.items():
        value = config_number(cfg, key, int)
        if value < minimum:
            raise GempoError(f"{key} must be >= {minimum}, got {value}")


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
