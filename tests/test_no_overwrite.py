"""No entry point writes into a folder that holds another run's outputs, or replaces exported
assets, without an explicit option: it stops with one line, before any work, and the files that
were there stay as they were."""

from __future__ import annotations

import subprocess
import sys

import pytest

from gempo.errors import GempoError
from gempo.runs import claim_export, claim_run_dir
from tests.conftest import REPO_ROOT

ENTRY_POINTS = {  # the entry point and a file of an earlier run in the folder it would use
    "dna.finetune": "samples.fasta",
    "dna.pretrain": "generator.pt",
    "dna.oracle": "metrics.json",
    "dna.evaluate": "evaluation.md",
    "control.train": "metrics.csv",
}


def run(module: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_fresh_folder_and_hydras_own_files_are_free(tmp_path):
    claim_run_dir(tmp_path / "missing")
    (tmp_path / ".hydra").mkdir()
    (tmp_path / "finetune.log").write_text("")
    claim_run_dir(tmp_path)
    (tmp_path / "summary.json").write_text("{}")
    with pytest.raises(GempoError, match=r"already holds another run's outputs \(summary.json\)"):
        claim_run_dir(tmp_path)
    claim_run_dir(tmp_path, resume=True)
    claim_run_dir(tmp_path, overwrite=True)
    with pytest.raises(GempoError, match="export_dir: .*summary.json already exist"):
        claim_export([tmp_path / "summary.json", tmp_path / "new.pt"])
    claim_export([tmp_path / "summary.json"], overwrite=True)


@pytest.mark.slow
@pytest.mark.parametrize(("module", "earlier"), ENTRY_POINTS.items())
def test_a_second_run_into_a_used_folder_stops_with_one_line(tmp_path, module, earlier):
    used = tmp_path / "run"
    used.mkdir()
    (used / earlier).write_text("an earlier run's file\n")
    done = run(module, f"hydra.run.dir={used}")
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr[-2000:]
    assert len(lines) == 1 and earlier in lines[0] and "overwrite=true" in lines[0], lines
    assert (used / earlier).read_text() == "an earlier run's file\n"


@pytest.mark.parametrize(
    ("module", "existing", "args"),
    [
        ("dna.oracle", "pred_activity_finetune.pt", []),
        ("dna.pretrain", "pretrained_small.pt", ["model=small"]),
    ],
)
@pytest.mark.slow
def test_export_never_replaces_a_file_without_overwrite(tmp_path, module, existing, args):
    export = tmp_path / "assets"
    export.mkdir()
    (export / existing).write_bytes(b"shipped")
    done = run(module, *args, f"export_dir={export}", f"hydra.run.dir={tmp_path / 'run'}")
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr[-2000:]
    assert len(lines) == 1 and f"{existing} already exist" in lines[0], lines
    assert (export / existing).read_bytes() == b"shipped"
