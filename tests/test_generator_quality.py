"""benchmarks/generator_quality.py: the background entropy it compares NELBOs with, end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from generator_quality import background_entropy

from dna.simulator import BACKGROUND, DINUCLEOTIDES

REPO = Path(__file__).resolve().parents[1]


def test_background_entropy_is_the_chains_expected_negative_log_likelihood() -> None:
    rng = np.random.default_rng(0)
    transition = DINUCLEOTIDES / DINUCLEOTIDES.sum(1, keepdims=True)
    num, length = 4000, 200
    tokens = np.empty((num, length), dtype=np.int64)
    tokens[:, 0] = rng.choice(4, size=num, p=BACKGROUND)
    cumulative = np.cumsum(transition, axis=1)
    for pos in range(1, length):
        tokens[:, pos] = (rng.random((num, 1)) > cumulative[tokens[:, pos - 1]]).sum(1)
    nll = -np.log(BACKGROUND[tokens[:, 0]]) - np.log(transition[tokens[:, :-1], tokens[:, 1:]]).sum(
        1
    )
    assert background_entropy(length) == pytest.approx(nll.mean(), abs=0.3)  # s.e. about 0.07
    assert background_entropy(length) < 200 * np.log(4.0) - 5  # well below uniform


@pytest.mark.slow
def test_generator_quality_writes_a_row_per_generator(tmp_path: Path) -> None:
    shipped = REPO / "dna" / "assets" / "generator" / "pretrained_small.pt"
    subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "generator_quality.py"),
            str(shipped),
            "--fresh=60",
            "--samples=20",
            "--times=2",
            f"--name={tmp_path / 'quality'}",
        ],
        check=True,
        capture_output=True,
        cwd=REPO,
    )
    payload = json.loads((tmp_path / "quality.json").read_text())
    data, generator = payload["rows"]
    assert data["set"].startswith("data: 60 fresh") and "nelbo" not in data
    assert generator["set"] == "generator: dna/assets/generator/pretrained_small.pt"
    # the shipped model learned the background: its NELBO is near that chain's entropy
    assert abs(generator["nelbo"] - payload["background_entropy"]) < 10
    assert 0 <= generator["with_hepg2_site_percent"] <= 100
    assert (
        "| generator: dna/assets/generator/pretrained_small.pt |"
        in (tmp_path / "quality.md").read_text()
    )
