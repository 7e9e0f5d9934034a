"""benchmarks/dna_table.py: per-seed lines and rows from a run folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from dna_table import calibration, seed_line, seed_rows


def fake_run(folder: Path) -> dict:
    folder.mkdir(parents=True)
    truth = np.linspace(0.0, 6.0, 20)
    pd.DataFrame(
        {
            "true_reward": truth,
            "reward_eval": 2.0 * truth + 1.0,  # perfectly calibrated in rank and shape
            "reward_ft": -truth,  # anti-calibrated
        }
    ).to_csv(folder / "samples.csv", index=False)
    summary = {
        "simulated": True,
        "checks": {
            "true_activity_above_true_threshold": False,
            "kmer3_corr_at_least_0.5": True,
            "app_log_lik_within_15pct": True,
        },
        "selected": {"step": 784},
        "train_seconds": 1680.0,
        "total_seconds": 1740.0,
        "threads": 1,
        "rows": {
            "finetuned": {"true_activity": 5.7},
            "final_model": {"true_activity": 5.1},
            "pretrained": {"true_activity": 0.0},
        },
    }
    (folder / "summary.json").write_text(json.dumps(summary))
    return summary


def test_per_seed_line_and_rows(tmp_path: Path) -> None:
    summary = fake_run(tmp_path / "default-seed3")
    r_eval, r_ft, r_audit = calibration(tmp_path / "default-seed3")
    assert (r_eval, r_ft) == pytest.approx((1.0, -1.0)) and np.isnan(r_audit)  # no audit column
    line = seed_line(summary, 3, tmp_path / "default-seed3")
    assert line == "| 3 | no | yes | yes | 1.00 | -1.00 | – | 784 | 28.0 | 29.0 | 1 |"
    rows = seed_rows(summary, 3)
    assert [r["name"] for r in rows] == ["GeMPO (selected)", "GeMPO (final model)", "pretrained"]
    assert all(r["seed"] == 3 for r in rows)
