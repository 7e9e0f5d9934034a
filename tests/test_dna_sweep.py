"""benchmarks/dna_sweep.py: the header names the threshold the checks use."""

from __future__ import annotations

from dna_sweep import threshold_text


def test_header_names_the_true_threshold_when_the_world_has_one() -> None:
    simulated = threshold_text({"threshold": 6.985, "true_threshold": 6.8741})
    assert simulated.startswith("threshold: the data's true 99.9th percentile 6.874, checked")
    assert "measured 99.9th percentile 6.99" in simulated
    real = threshold_text({"threshold": 6.985, "true_threshold": None})
    assert real == "threshold: the data's measured 99.9th percentile 6.99"
