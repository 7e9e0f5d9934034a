"""Sweeps through Hydra's submitit launcher (``hydra/launcher=local_parallel``): jobs run side
by side, and a job that is preempted is requeued and continues from its checkpoint."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf

from control.checkpoint import load_checkpoint

REPO = Path(__file__).resolve().parents[1]
TINY_SAC = [
    "agent=sac",
    "env=inverted_pendulum",
    "batch_size=32",
    "learning_starts=100",
    "eval_every=200",
    "eval_episodes=2",
    "log_every=100",
    "critic.hidden=32",
    "torch_threads=1",
    "device=cpu",
    "progress=false",
]


def _sweep(*args: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "control.train", "-m", "hydra/launcher=local_parallel", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (from ``/proc``)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


@pytest.mark.slow
def test_a_two_job_sweep_runs_both_jobs_through_the_local_executor(tmp_path):
    sweep = _sweep("seed=0,1", "total_steps=300", *TINY_SAC, f"hydra.sweep.dir={tmp_path}")
    output, _ = sweep.communicate(timeout=300)
    assert sweep.returncode == 0, output[-3000:]
    assert "Submitit 'local' sweep output dir" in output
    runs = sorted(p for p in tmp_path.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert [p.name for p in runs] == [
        "0_inverted_pendulum_sac_seed0",
        "1_inverted_pendulum_sac_seed1",
    ]
    jobs = [p for p in (tmp_path / ".submitit").iterdir() if p.name.isdigit()]
    assert len(jobs) == 2  # one submitit job (own process, own logs) per run
    states = [load_checkpoint(run) for run in runs]
    assert [s["env_step"] for s in states] == [300, 300]
    assert [OmegaConf.create(s["config"]).seed for s in states] == [0, 1]
    weights = [s["agent"]["model"]["critic.q1.0.weight"] for s in states]
    assert not torch.equal(*weights)  # different seeds, different runs


@pytest.mark.slow
def test_a_preempted_job_is_requeued_and_continues_from_its_checkpoint(tmp_path):
    """Submitit's preemption signal makes the job checkpoint its submission and exit; the
    executor runs it again with the same overrides, and ``resume=true`` continues the run."""
    sweep = _sweep(
        "seed=0", "total_steps=1200", "resume=true", *TINY_SAC, f"hydra.sweep.dir={tmp_path}"
    )
    run = tmp_path / "0_inverted_pendulum_sac_seed0"
    deadline = time.monotonic() + 240
    while not (run / "checkpoints" / "last.ckpt").is_file():
        assert sweep.poll() is None and time.monotonic() < deadline, "no checkpoint was written"
        time.sleep(0.1)
    (controller,) = [int(p.name) for p in (tmp_path / ".submitit").iterdir() if p.name.isdigit()]
    (task,) = _children(controller)
    os.kill(task, signal.SIGUSR2)  # what SLURM sends before a timeout or a preemption
    output, _ = sweep.communicate(timeout=300)
    assert sweep.returncode == 0, output[-3000:]
    job_log = next((tmp_path / ".submitit" / str(controller)).glob("*_log.out")).read_text()
    assert f"Requeued job {controller}" in job_log
    starts = [line for line in (run / "train.log").read_text().splitlines() if "steps from" in line]
    assert len(starts) == 2 and starts[0].endswith("from 0") and not starts[1].endswith("from 0")
    assert load_checkpoint(run)["env_step"] == 1200
    curve = pd.read_csv(run / "metrics.csv")
    evals = curve[curve["name"] == "eval/return_mean"]["env_step"].tolist()
    assert evals == list(range(200, 1201, 200))  # no evaluation lost or repeated
