"""benchmarks/dna_designs.py: the per-design file and the per-variant numbers of a run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from dna_designs import COLUMNS, designs, variant_summary


def test_designs_keep_the_notebook_columns_and_the_summary_reads_them(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    repeated = "ACGTTGCA" * 25  # one 8-mer 25 times over (with its reverse complement: 50)
    plain = "".join(rng.choice(list("ACGT"), 200))
    truth = np.array([8.0, 6.0, 4.0, 7.5])
    pd.DataFrame(
        {
            "seq": [repeated, plain, plain, repeated],
            "reward_eval": 2.0 * truth + 0.123456,
            "reward_ft": -truth,
            "true_reward": truth,
            "ft_hepg2": truth,  # not kept
            "world": "simulated",  # not kept
        }
    ).to_csv(tmp_path / "samples.csv", index=False)
    frame = designs(tmp_path)
    assert list(frame.columns) == [c for c in COLUMNS if c in frame]  # the kept ones, in order
    assert "ft_hepg2" not in frame and frame["reward_eval"].iloc[0] == pytest.approx(16.1235)
    row = variant_summary(frame, true_threshold=6.874)
    assert row["true_median"] == pytest.approx(6.75)
    assert row["true_above_threshold_percent"] == pytest.approx(50.0)
    assert row["r_eval_truth"] == pytest.approx(1.0)
    assert row["r_fine-tune_truth"] == pytest.approx(-1.0)
    assert "r_audit_truth" not in row  # no audit column, no number
    assert row["max_8mer_copies_median"] > 20  # two of four sequences repeat one 8-mer
