"""``benchmarks/control_learning.py``: result files read as runs, with the final return as the
headline and the mean of the last evaluations next to it."""

from __future__ import annotations

from control_learning import LAST_EVALS, as_runs


def result(seed: int, evals: list[float], raws: list[float]) -> dict:
    steps = [10_000 * (i + 1) for i in range(len(evals))]
    return {
        "env": "Walker2d-v5",
        "agent": "gempo_cpu",
        "seed": seed,
        "env_steps": steps[-1],
        "wall_s_this_process": 60.0,
        "resumed": False,
        "machine": "test",
        "curves": {
            "eval": {"env_step": steps, "return_mean": evals},
            "eval_raw": {"env_step": steps, "return_mean": raws},
        },
    }


def test_the_final_return_is_the_headline_and_the_last_evaluations_are_averaged():
    assert LAST_EVALS == 3
    (run,) = as_runs([result(0, [1.0, 100.0, 200.0, 300.0, 1000.0], [5.0, 6.0, 7.0, 8.0, 9.0])])
    assert run.score == 1000.0  # the protocol's final return, not an average
    assert run.finals == {"eval": 1000.0, "eval_raw": 9.0, "eval_last3": 500.0}
    assert run.meta["jobs"] == 2  # files written before the runs at a time were recorded
