"""``dna.finetune`` end to end on a tiny world: reward rises, resume is exact, one-line errors."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from aggregate import read_dna_run
from omegaconf import OmegaConf

import dna.finetune
from dna.checks import check_names, threshold_checks
from dna.data import split_halves
from dna.finetune import finetune
from dna.metrics import kmer_counts
from dna.model import DNAGenerator, save_generator
from dna.oracle import OracleSet
from dna.rewards import OracleReward
from dna.sequences import encode, read_fasta
from dna.training import anchor_sequences, training_half, training_reference_kmers
from gempo.errors import GempoError
from gempo.runs import compose_config
from tests.conftest import REPO_ROOT

LENGTH = 16


class GContentOracle(torch.nn.Module):
    """Stand-in Pred-Activity oracle: (G share, A share, C share) per sequence, ``(batch, 3)``."""

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return torch.stack([(tokens == k).float().mean(1) for k in (2, 0, 1)], dim=1)


@pytest.fixture
def tiny(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> list[str]:
    """Overrides for a tiny run in ``tmp_path``: untrained 16-bp generator, G-content oracle
    (the inputs live in a folder of their own, the run folder starts empty)."""
    inputs = tmp_path_factory.mktemp("inputs")
    generator = DNAGenerator(
        channels=16, dilations=[1, 2], kernel_size=3, time_dim=16, length=LENGTH, steps=4
    )
    save_generator(generator, inputs / "gen.pt")
    rng = np.random.default_rng(0)
    seqs = ["".join(rng.choice(list("ACGT"), LENGTH)) for _ in range(1000)]
    hepg2 = [s.count("G") / LENGTH for s in seqs]
    pd.DataFrame({"seq": seqs, "hepg2": hepg2, "k562": 0.0, "sknsh": 0.0}).to_csv(
        inputs / "data.csv", index=False
    )
    oracles = OracleSet(GContentOracle(), GContentOracle(), None)
    monkeypatch.setattr(dna.finetune, "load_oracles", lambda cfg: oracles)
    monkeypatch.chdir(tmp_path)
    return [
        f"pretrained={inputs / 'gen.pt'}",
        f"data.path={inputs / 'data.csv'}",
        "model.channels=16",
        "model.dilations=[1,2]",
        "model.kernel_size=3",
        "model.time_dim=16",
        f"model.length={LENGTH}",
        "model.steps=4",
        "group_size=16",
        "updates_per_batch=1",  # one update per scored batch (the resume test also tries 2)
        "objective.loss_times=2",
        "optimizer.lr=0.01",
        "ema_decay=0.5",
        "final.num_samples=64",
        "final.batch_size=64",
        "final.log_lik_times=2",
        "trainer.accelerator=cpu",
        "trainer.enable_progress_bar=false",
    ]


def run(overrides: list[str]) -> dict:
    cfg = compose_config("dna_finetune", overrides)
    return finetune(cfg)


def metrics_by_step(path: Path) -> pd.DataFrame:
    frame = pd.read_csv(path)
    return frame.dropna(subset=["train/loss"]).set_index("step")


def test_finetune_raises_reward_and_writes_outputs(
    tiny: list[str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="gempo.runs"):
        summary = run([*tiny, "trainer.max_steps=15", "checkpoint_every=5", "log_every=5"])
    progress = [r.getMessage() for r in caplog.records if r.name == "gempo.runs"]
    assert [line.split(",")[0] for line in progress] == [
        "step 5/15 (33%)",
        "step 10/15 (67%)",
        "step 15/15 (100%)",
    ]
    assert all("train/reward_median" in line and "train/kmer3_corr" in line for line in progress)
    base, tuned = summary["rows"]["pretrained"], summary["rows"]["finetuned"]
    assert base["pred_activity"] == pytest.approx(0.25, abs=0.08)  # uniform generator
    assert tuned["pred_activity"] > base["pred_activity"] + 0.1
    assert summary["optimizer_steps"] == 15 and summary["oracle_calls"] == 15 * 16
    assert summary["checks"]["pred_activity_above_threshold"] == (
        tuned["pred_activity"] > summary["threshold"]
    )

    logged = metrics_by_step(tmp_path / "logs" / "csv" / "metrics.csv")
    for key in (
        "reward_mean",
        "reward_median",
        "reward_max",
        "negative_mass_share",
        "diversity",
        "kmer3_corr",
        "reward_calls",
    ):
        assert f"train/{key}" in logged.columns
    for key in ("reward_mean", "kmer3_corr"):  # the reference is the G-richest 0.1%
        assert logged[f"train/{key}"].iloc[-3:].mean() > logged[f"train/{key}"].iloc[:3].mean()
    assert any((tmp_path / "logs" / "tensorboard").glob("events.out.tfevents.*"))

    samples = pd.read_csv(tmp_path / "samples.csv")
    assert len(samples) == 64 and {"seq", "ft_hepg2", "eval_hepg2", "log_lik"} <= set(
        samples.columns
    )
    assert read_fasta(tmp_path / "samples.fasta") == samples["seq"].tolist()
    assert set(samples["world"]) == {"real"}  # a user's data file: no ground truth
    header = (tmp_path / "samples.fasta").read_text().splitlines()[0]
    assert header.startswith(">sample0|eval=") and header.endswith("|world=real")
    assert json.loads((tmp_path / "summary.json").read_text())["optimizer_steps"] == 15
    selected = summary["selected"]  # the shipped final.min_kmer3_corr=0.6 selects a batch
    assert selected["min_closeness"] == 0.6 and selected["step"] is not None
    assert selected["batch_closeness"] >= 0.6
    summary_md = (tmp_path / "summary.md").read_text()
    assert "world: real\n" in summary_md
    # the selected snapshot's row and, next to it, the final model's (no selection)
    assert tuned["name"] == "GeMPO (selected)"
    final = summary["rows"]["final_model"]
    assert final["name"] == "GeMPO (final model)" and final["num"] == tuned["num"]
    assert final != tuned
    assert "| GeMPO (selected) |" in summary_md and "| GeMPO (final model) |" in summary_md
    assert f"sampled from: the behaviour policy of step {selected['step']}" in summary_md
    for name in ("generator.pt", "checkpoints/last.ckpt", "reward_curve.png"):
        assert (tmp_path / name).is_file(), name

    aggregated = read_dna_run(tmp_path)  # what benchmarks/aggregate.py reads of a run
    assert (aggregated.task, aggregated.seed) == ("hepg2", 0)
    # no ground truth in this world: the eval oracle's score is the headline
    assert next(iter(aggregated.finals)) == "pred_activity"
    assert aggregated.finals == {k: tuned[k] for k in aggregated.finals}
    assert "atac_acc" not in aggregated.finals  # NaN here: this world has no ATAC oracle
    assert {"pred_activity_ft", "kmer3_corr", "app_log_lik"} <= set(aggregated.finals)
    rewards = pd.read_csv(tmp_path / "logs" / "csv" / "metrics.csv").dropna(
        subset=["train/reward_mean"]
    )
    assert aggregated.curve[:, 0].tolist() == rewards["train/reward_calls"].tolist()
    assert aggregated.curve[-1, 0] == 15 * 16


@pytest.mark.slow
def test_data_anchor_holds_the_generator_near_the_data(tiny: list[str], tmp_path: Path) -> None:
    quick = [
        *tiny,
        "trainer.max_steps=15",
        "final.compare_pretrained=false",
        "final.min_kmer3_corr=null",  # sample the end of the run
        "reg.data_target=null",  # a fixed anchor weight
        "overwrite=true",  # the runs below share one folder
    ]
    anchored = run([*quick, "reg.data=5.0", "reg.data_batch=32", "reg.data_top=1"])
    logged = metrics_by_step(tmp_path / "logs" / "csv" / "metrics.csv")
    assert logged["train/data_loss"].notna().all()
    free = run([*quick, "reg.data=0"])
    # the data are uniform random sequences (G share 0.25, medians in steps of 1/16); the reward
    # is the G share: the anchored run stays near the data, the free one runs away
    assert anchored["rows"]["finetuned"]["pred_activity"] < 0.35
    assert free["rows"]["finetuned"]["pred_activity"] > 0.6
    with pytest.raises(GempoError, match="reg.data must be >= 0"):
        run([*quick, "reg.data=-1"])
    with pytest.raises(GempoError, match=r"reg.data_top must be in \(0, 1\], got 0.0"):
        run([*quick, "reg.data=0.1", "reg.data_top=0.0"])
    with pytest.raises(GempoError, match=r"must be > 0, got 0 \(no anchor at all: reg.data=0 reg"):
        run([*tiny, "reg.data=0"])


def test_anchor_replays_the_most_active_fraction_under_the_objective() -> None:
    data = pd.DataFrame(
        {
            "seq": ["AAAA", "CCCC", "GGGG", "TTTT"],
            "hepg2": [1.0, 4.0, 3.0, 2.0],
            "k562": [0.0, 5.0, 0.0, 0.0],
            "sknsh": [0.0, 5.0, 0.0, 0.0],
        }
    )
    hepg2 = OracleReward(GContentOracle(), target="hepg2")
    assert anchor_sequences(data, hepg2, 1.0) == ["CCCC", "GGGG", "TTTT", "AAAA"]
    assert anchor_sequences(data, hepg2, 0.5) == ["CCCC", "GGGG"]
    assert anchor_sequences(data, hepg2, 0.01) == ["CCCC"]  # at least one
    # specificity: CCCC is active everywhere (4 - 5 = -1), so GGGG (3 - 0) leads
    specific = OracleReward(GContentOracle(), target="hepg2", off_target_weight=1.0)
    assert anchor_sequences(data, specific, 0.5) == ["GGGG", "TTTT"]


def test_training_reads_only_the_finetune_half_of_the_measured_data() -> None:
    """Fine-tuning's data (anchor replay, the 3-mer constraint's reference) is the fine-tune
    oracle's chromosome half, measured columns only: never the eval half or the truth."""
    data = pd.DataFrame(
        {
            "seq": ["AAAAAAAA", "CCCCCCCC", "GGGGGGGG", "TTTTTTTT", "ACGTACGT", "CATGCATG"],
            "hepg2": [1.0, 2.0, 9.0, 8.0, 7.0, 0.0],
            "k562": 0.0,
            "sknsh": 0.0,
            "true_hepg2": [5.0, 0.0, 9.0, 9.0, 9.0, 0.0],
            "chrom": ["chr1", "chr3", "chr12", "chr20", "chrX", "chr11"],
        }
    )
    half = training_half(split_halves(data))
    assert list(half.columns) == ["seq", "hepg2", "k562", "sknsh"]
    assert sorted(half["seq"]) == ["AAAAAAAA", "CATGCATG", "CCCCCCCC"]  # chr1, chr3, chr11
    cfg = OmegaConf.create({"cell": {"target": "hepg2"}})
    # the constraint's reference: the half's most active sequence by measurement (not by truth)
    np.testing.assert_array_equal(
        training_reference_kmers(half, cfg), kmer_counts(encode(["CCCCCCCC"]), 3)
    )


@pytest.mark.parametrize(
    ("updates_per_batch", "interrupt", "anchor"),
    [
        (1, 2, "reg.data=0.0 reg.data_target=null final.min_kmer3_corr=null"),  # no anchor
        (2, 3, ""),  # the shipped defaults
        (2, 3, "reg.data=0.5 reg.data_target=null"),  # a fixed anchor
        (1, 2, "reg.data=0.05 reg.data_target=0.99 reg.data_rate=0.5"),  # adapted weight: saved
        (1, 3, "final.min_kmer3_corr=-1"),  # the selected snapshot is sampled at the end
    ],
)
@pytest.mark.slow
def test_resume_continues_from_the_same_step_with_the_same_metrics(
    tiny: list[str], tmp_path: Path, updates_per_batch: int, interrupt: int, anchor: str
) -> None:
    # with 2 updates per batch, the interrupted run stops between the two updates of a batch:
    # the resumed run must fit the same scored batch (it is in the checkpoint), not a new one
    quick = [
        *tiny,
        "checkpoint_every=2",
        f"updates_per_batch={updates_per_batch}",
        *anchor.split(),  # replayed data batches come from the checkpointed RNG stream too
        "final.num_samples=4",
        "final.compare_pretrained=false",
    ]
    straight_summary = run([*quick, "trainer.max_steps=4"])
    straight = metrics_by_step(tmp_path / "logs" / "csv" / "metrics.csv")
    for leftover in ("logs", "checkpoints"):
        subprocess.run(["rm", "-r", str(tmp_path / leftover)], check=True)

    # an "interrupted" run, into the folder of the straight run's remaining outputs
    run([*quick, f"trainer.max_steps={interrupt}", "overwrite=true"])
    summary = run([*quick, "trainer.max_steps=4", "resume=true"])
    assert summary["resumed_from"] == str(tmp_path / "checkpoints" / "last.ckpt")
    assert summary["optimizer_steps"] == 4
    resumed = metrics_by_step(tmp_path / "logs" / "csv" / "metrics.csv")
    assert sorted(resumed.index) == sorted(straight.index)  # steps 0-3, each logged once
    columns = ["train/loss", "train/reward_mean", "train/weight_std", "train/reward_calls"]
    columns += ["train/data_alpha"] if "reg.data_target=0.99" in anchor else []
    pd.testing.assert_frame_equal(
        resumed.loc[straight.index, columns], straight[columns], rtol=1e-5
    )
    assert summary["selected"] == straight_summary["selected"]
    if "min_kmer3_corr" in anchor:
        tuned = summary["rows"]["finetuned"]
        assert tuned == pytest.approx(straight_summary["rows"]["finetuned"], nan_ok=True)


def test_bad_config_values_raise_one_clear_error(tiny: list[str], tmp_path: Path) -> None:
    with pytest.raises(GempoError, match="group_size must be >= 1, got 0"):
        run([*tiny, "group_size=0"])
    with pytest.raises(GempoError, match="generator checkpoint '/nowhere/gen.pt' not found"):
        run([*tiny, "pretrained=/nowhere/gen.pt"])
    with pytest.raises(GempoError, match="channels=16, but model.channels=32"):
        run([*tiny, "model.channels=32"])
    with pytest.raises(GempoError, match=r"resume='/nowhere.ckpt': checkpoint file not found"):
        run([*tiny, "resume=/nowhere.ckpt"])
    with pytest.raises(GempoError, match=r"final.min_kmer3_corr must be .* \[-1, 1\] .*got 2"):
        run([*tiny, "final.min_kmer3_corr=2"])
    with pytest.raises(GempoError, match="final.min_kmer3_corr must be a number, got 'high'"):
        run([*tiny, "final.min_kmer3_corr=high"])
    with pytest.raises(GempoError, match="group_size must be an integer, got 2.5"):
        run([*tiny, "group_size=2.5"])
    with pytest.raises(GempoError, match="repeats.k must be an integer, got 'abc'"):
        run([*tiny, "repeats.k=abc"])
    with pytest.raises(GempoError, match="repeats.weight must be >= 0, got -1"):
        run([*tiny, "repeats.weight=-1"])
    with pytest.raises(GempoError, match=r"repeats.quantile must be in \(0, 1\], got 0"):
        run([*tiny, "repeats.quantile=0"])


@pytest.mark.slow
@pytest.mark.parametrize(
    ("argument", "message"),
    [
        (
            "oracle=nope",
            "error: oracle=nope: unknown oracle config; expected one of atac, grelu, kmer, "
            "pred_activity",
        ),
        ("group_size=0", "error: group_size must be >= 1, got 0"),
        ("pretrained=/nowhere/gen.pt", "error: generator checkpoint '/nowhere/gen.pt' not found"),
    ],
)
def test_cli_prints_one_line_for_bad_values(argument: str, message: str, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "dna.finetune", argument, f"hydra.run.dir={tmp_path}"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert errors[-1].startswith(message) and "Traceback" not in result.stderr
    assert sum(line.startswith("error:") for line in errors) == 1


class CallCounter(GContentOracle):
    """The G-content oracle, counting the sequences it scores."""

    def __init__(self) -> None:
        super().__init__()
        self.scored = 0

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        self.scored += tokens.shape[0]
        return super().forward(tokens)


def test_training_and_selection_never_see_the_eval_oracle(
    tiny: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fine-tune oracle scores every training batch; the eval oracle only the final samples,
    after training and the snapshot selection are done."""
    finetune_oracle, eval_oracle = CallCounter(), CallCounter()
    oracles = OracleSet(finetune_oracle, eval_oracle, None)
    monkeypatch.setattr(dna.finetune, "load_oracles", lambda cfg: oracles)
    evaluation = dna.finetune.final_evaluation
    seen_at_the_end: list[int] = []

    def final_evaluation(*args, **kwargs):
        seen_at_the_end.append(eval_oracle.scored)
        return evaluation(*args, **kwargs)

    monkeypatch.setattr(dna.finetune, "final_evaluation", final_evaluation)
    summary = run([*tiny, "trainer.max_steps=6", "repeats.weight=1.0"])
    assert summary["selected"]["step"] is not None  # a selection took place during training
    assert summary["repeats"].startswith("RepeatPenalty(weight=1.0, allowed=")  # a term, no oracle
    assert seen_at_the_end == [0]  # nothing reached the eval oracle before the final samples
    assert eval_oracle.scored > 0 and finetune_oracle.scored >= summary["oracle_calls"]


def test_simulated_world_is_checked_on_the_truth() -> None:
    world = SimpleNamespace(simulated=True, threshold=6.985, true_threshold=6.874)
    rows = {
        "finetuned": {"pred_activity": 14.2, "true_activity": 5.74, "kmer3_corr": 0.62,
                      "app_log_lik": -261.5},
        "pretrained": {"pred_activity": 0.02, "true_activity": -0.05, "app_log_lik": -271.2},
    }  # fmt: skip
    checks = threshold_checks(rows, world)
    assert checks["true_activity_above_true_threshold"] is False  # the oracle's 14.2 does not count
    assert checks["eval_oracle_above_threshold (not checked)"] is True
    assert "pred_activity_above_threshold" not in checks
    assert list(checks)[:3] == list(check_names(simulated=True))
    rows["finetuned"]["true_activity"] = 6.9
    assert threshold_checks(rows, world)["true_activity_above_true_threshold"] is True
    real = SimpleNamespace(simulated=False, threshold=6.985, true_threshold=None)
    assert threshold_checks(rows, real)["pred_activity_above_threshold"] is True
