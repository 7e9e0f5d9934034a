"""Data-parallel DNA training through Lightning's DDP on the CPU (two processes, gloo): each
rank draws and scores its own groups, one rank logs, checkpoints and reports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from gempo.module import GeMPOModule
from tests.dna.test_model import write_enhancers

REPO = Path(__file__).resolve().parents[1]
DDP = ["trainer.strategy=ddp", "trainer.devices=2"]
TINY_FINETUNE = [  # the shipped generator and oracles, a few small steps
    "trainer.max_steps=4",
    "updates_per_batch=2",
    "group_size=8",
    "final.num_samples=16",
    "final.batch_size=16",
    "final.compare_pretrained=false",
    "final.log_lik_times=2",
    "model.steps=8",
    "trainer.accelerator=cpu",
    "trainer.enable_progress_bar=false",
]


def _run(module: str, run_dir: Path, *overrides: str) -> pd.DataFrame:
    """Run ``python -m module`` into ``run_dir``; its logged metrics."""
    done = subprocess.run(
        [sys.executable, "-m", module, *overrides, f"hydra.run.dir={run_dir}"],
        cwd=REPO,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return pd.read_csv(run_dir / "logs" / "csv" / "metrics.csv")


@pytest.mark.slow
def test_ddp_finetune_scores_twice_the_groups_and_reports_once(tmp_path):
    one = _run("dna.finetune", tmp_path / "one", *TINY_FINETUNE).dropna(subset=["train/loss"])
    two = _run("dna.finetune", tmp_path / "two", *TINY_FINETUNE, *DDP).dropna(subset=["train/loss"])
    assert one["step"].tolist() == two["step"].tolist() == [0, 1, 2, 3]
    # each rank drew from its own random stream; the checkpoint keeps both for the resume
    rng = torch.load(tmp_path / "two" / "checkpoints" / "last.ckpt", weights_only=False)[
        GeMPOModule.RNG_KEY
    ]
    assert rng.shape[0] == 2 and not torch.equal(rng[0], rng[1])
    # the same loss curve up to sampling noise (rank 0 logs its own groups' loss)
    assert two["train/loss"].to_numpy() == pytest.approx(one["train/loss"].to_numpy(), rel=0.25)
    assert (two["train/reward_calls"] == 2 * one["train/reward_calls"]).all()
    summaries = [json.loads((tmp_path / d / "summary.json").read_text()) for d in ("one", "two")]
    assert summaries[1]["oracle_calls"] == 2 * summaries[0]["oracle_calls"] == 2 * 2 * 8
    assert (tmp_path / "two" / "train_ddp_process_1.log").is_file()  # the second process
    assert len(list((tmp_path / "two").rglob("summary.json"))) == 1
    # the shipped world is simulated, and its outputs say so
    assert (
        "world: simulated (ground truth from the simulator)"
        in (tmp_path / "two" / "summary.md").read_text()
    )
    header = (tmp_path / "two" / "samples.fasta").read_text().splitlines()[0]
    assert "|true=" in header and header.endswith("|world=simulated")


@pytest.mark.slow
def test_ddp_pretrain_follows_the_one_process_loss_curve(tmp_path):
    data = write_enhancers(tmp_path / "data.csv", 96, 200)
    overrides = [
        f"data.path={data}",
        "data.batch_size=16",
        "model.channels=16",
        "model.dilations=[1,2]",
        "model.time_dim=16",
        "trainer.max_steps=20",
        "trainer.val_check_interval=20",
        "trainer.limit_val_batches=2",
        "trainer.accelerator=cpu",
        "trainer.enable_progress_bar=false",
        "trainer.log_every_n_steps=1",
        "warmup_steps=1",
        "optimizer.lr=0.02",
        "ema_decay=0.5",
        "checkpoint_every=10",
    ]
    one = _run("dna.pretrain", tmp_path / "one", *overrides)
    two = _run("dna.pretrain", tmp_path / "two", *overrides, *DDP)
    curves = [frame["train/nelbo"].dropna().to_numpy() for frame in (one, two)]
    assert len(curves[0]) == len(curves[1]) == 20
    for curve in curves:  # from the uniform model (277 nats) down by the data's composition
        assert curve[0] == pytest.approx(277.3, abs=0.5) and curve[-5:].mean() < curve[0] - 25
    val = [json.loads((tmp_path / d / "pretrain_summary.json").read_text()) for d in ("one", "two")]
    assert val[1]["val_nelbo"] == pytest.approx(val[0]["val_nelbo"], rel=0.03)
    assert val[1]["optimizer_steps"] == 20
    assert (tmp_path / "two" / "checkpoints" / "last.ckpt").is_file()
    assert (tmp_path / "two" / "train_ddp_process_1.log").is_file()
