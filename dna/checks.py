"""The acceptance checks of a DNA fine-tuning run: activity (on the ground truth in the
simulated world, on the eval oracle with real data) and naturalness."""

from __future__ import annotations

from typing import Any

from dna.evaluate import EvaluationWorld

MIN_KMER3_CORR = 0.5
"""Acceptance: the designs' 3-mer spectrum correlates at least this much with the reference."""
MAX_LOG_LIK_DROP = 0.15
"""Acceptance: App-Log-Lik within this share of the pretrained model's."""
NATURALNESS_CHECKS = (
    f"kmer3_corr_at_least_{MIN_KMER3_CORR}",
    f"app_log_lik_within_{round(100 * MAX_LOG_LIK_DROP)}pct",
)


def check_names(simulated: bool) -> tuple[str, ...]:
    """The acceptance checks of a run's summary: the activity check first (on the ground truth
    in the simulated world, on the eval oracle in the real one), then naturalness."""
    activity = (
        "true_activity_above_true_threshold" if simulated else "pred_activity_above_threshold"
    )
    return (activity, *NATURALNESS_CHECKS)


def threshold_checks(rows: dict[str, dict[str, Any]], world: EvaluationWorld) -> dict[str, Any]:
    """The acceptance checks of the default run. Activity: in the simulated world the designs'
    median true activity above the data's true 99.9th percentile (the eval oracle's median
    against the data's measured 99.9th percentile is reported next to it, not checked); in the
    real world the eval oracle's median above the data's 99.9th percentile. Naturalness: 3-mer
    correlation >= :data:`MIN_KMER3_CORR`, App-Log-Lik within :data:`MAX_LOG_LIK_DROP` of the
    pretrained model's."""
    tuned = rows["finetuned"]
    activity, kmer3, log_lik = check_names(world.simulated)
    eval_above = tuned["pred_activity"] > world.threshold
    checks: dict[str, Any] = {
        activity: tuned["true_activity"] > world.true_threshold if world.simulated else eval_above,
        kmer3: tuned["kmer3_corr"] >= MIN_KMER3_CORR,
    }
    if "pretrained" in rows:
        base = rows["pretrained"]
        drop = abs(tuned["app_log_lik"] - base["app_log_lik"])
        checks[log_lik] = drop <= MAX_LOG_LIK_DROP * abs(base["app_log_lik"])
    if world.simulated:
        checks["eval_oracle_above_threshold (not checked)"] = eval_above
        if "pretrained" in rows:
            oracle_gain = tuned["pred_activity"] - base["pred_activity"]
            true_gain = tuned["true_activity"] - base["true_activity"]
            checks["eval_oracle_gain"] = oracle_gain
            checks["true_gain"] = true_gain
            checks["real_share_of_gain"] = true_gain / oracle_gain if oracle_gain else float("nan")
    return checks
