"""The evaluation table: per-sequence scores, row metrics, best-of-N and the CLI's outputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from dna import metrics
from dna.evaluate import (
    best_of_n,
    build_world,
    evaluate,
    evaluate_tokens,
    format_markdown,
    score_sequences,
    summarize,
)
from dna.model import DNAGenerator, save_generator
from dna.oracle import (
    AccessibilityClassifier,
    KmerRidgeOracle,
    OracleSet,
    PredActivityOracle,
    save_oracle,
)
from dna.rewards import OracleReward
from dna.sequences import decode, encode, write_fasta
from gempo.errors import GempoError
from gempo.runs import compose_config

LENGTH = 16
ORACLE_SIZE = {"seq_len": LENGTH, "channels": 4, "first_kernel": 3, "num_blocks": 1, "hidden": 8}


def tiny_world_parts(tmp_path: Path) -> dict[str, Path]:
    """Tiny oracle checkpoints, a tiny generator and a tiny data file (16 bp) on disk."""
    torch.manual_seed(0)
    paths = {
        "finetune": tmp_path / "ft.pt",
        "eval": tmp_path / "eval.pt",
        "atac": tmp_path / "atac.pt",
        "generator": tmp_path / "gen.pt",
        "data": tmp_path / "data.csv",
    }
    save_oracle(PredActivityOracle(**ORACLE_SIZE), paths["finetune"])
    save_oracle(PredActivityOracle(**ORACLE_SIZE), paths["eval"])
    save_oracle(AccessibilityClassifier(**ORACLE_SIZE), paths["atac"])
    generator = DNAGenerator(
        channels=8, dilations=[1], kernel_size=3, time_dim=8, length=LENGTH, steps=4
    )
    save_generator(generator, paths["generator"])
    rng = np.random.default_rng(0)
    seqs = ["".join(rng.choice(list("ACGT"), LENGTH)) for _ in range(2000)]
    pd.DataFrame({"seq": seqs, "hepg2": np.arange(2000.0), "k562": 0.0, "sknsh": 1.0}).to_csv(
        paths["data"], index=False
    )
    return paths


@pytest.fixture
def parts(tmp_path: Path) -> dict[str, Path]:
    return tiny_world_parts(tmp_path)


def test_score_and_summarize_match_direct_computation(parts: dict[str, Path]) -> None:
    audit = KmerRidgeOracle(k=2, seq_len=LENGTH)
    with torch.no_grad():
        audit.weight.normal_(generator=torch.Generator().manual_seed(0))
    oracles = OracleSet(parts["finetune"], parts["eval"], parts["atac"], audit=audit)
    pretrained = DNAGenerator(
        channels=8, dilations=[1], kernel_size=3, time_dim=8, length=LENGTH, steps=4
    )
    data = pd.read_csv(parts["data"])
    # rows 0-999 on chr1, 1000-1899 on chr12, the last 100 on chrX (validation)
    data["chrom"] = ["chr1"] * 1000 + ["chr12"] * 900 + ["chrX"] * 100
    cell = {"target": "hepg2", "off_target_weight": 0.0}
    world = build_world(oracles, pretrained, data, False, cell, log_lik_times=2)
    # the reported metrics' reference: the top 0.1% by hepg2 (= row index) of chr12-22, the
    # eval oracle's half; not the whole data's top (chrX) nor training's half (chr1-11)
    assert decode(world.reference) == [data["seq"][1899]]
    assert world.reference_half == "chr12-22"
    assert world.threshold == pytest.approx(np.quantile(np.arange(2000.0), 0.999))

    tokens = torch.randint(0, 4, (9, LENGTH))
    row = evaluate_tokens(world, tokens, "random")
    with torch.no_grad():
        eval_hepg2 = oracles.eval(tokens)[:, 0].numpy()
        ft_hepg2 = oracles.finetune(tokens)[:, 0].numpy()
        accessible = oracles.atac.predict_accessible(tokens).numpy()
    assert row["pred_activity"] == pytest.approx(float(np.median(eval_hepg2)), abs=1e-6)
    assert row["pred_activity_ft"] == pytest.approx(float(np.median(ft_hepg2)), abs=1e-6)
    audit_hepg2 = audit(tokens)[:, 0].numpy()
    assert row["pred_activity_audit"] == pytest.approx(float(np.median(audit_hepg2)), abs=1e-6)
    assert row["atac_acc"] == pytest.approx(100.0 * accessible.mean())
    assert row["kmer3_corr"] == pytest.approx(metrics.kmer_pearson(tokens, world.reference, 3))
    assert row["hamming"] == pytest.approx(metrics.mean_pairwise_hamming(tokens))
    # the untrained generator is uniform: log p ~ -16 log 4 per sequence
    assert row["app_log_lik"] == pytest.approx(-LENGTH * np.log(4.0), rel=0.5)
    assert "true_activity" not in row  # real world: no ground truth


def test_specificity_reward_and_ground_truth_columns() -> None:
    class Constant(torch.nn.Module):
        def forward(self, tokens: torch.Tensor) -> torch.Tensor:
            return torch.tensor([[3.0, 1.0, 2.0]]).expand(len(tokens), 3)

    reward = OracleReward(Constant(), target="k562", off_target_weight=2.0)
    # k562 = 1, others mean (3 + 2) / 2 = 2.5: 1 - 2 * 2.5 = -4
    torch.testing.assert_close(
        reward(torch.zeros(2, 0), torch.zeros(2, 5, dtype=torch.long)), torch.full((2,), -4.0)
    )
    with pytest.raises(GempoError, match="unknown cell type 'liver'"):
        OracleReward(Constant(), target="liver")

    oracles = OracleSet(Constant(), Constant(), None)
    pretrained = DNAGenerator(
        channels=8, dilations=[1], kernel_size=3, time_dim=8, length=200, steps=2
    )
    rng = np.random.default_rng(1)
    data = pd.DataFrame(
        {
            "seq": ["".join(rng.choice(list("ACGT"), 200)) for _ in range(20)],
            "hepg2": np.arange(20.0),
            "k562": 0.0,
            "sknsh": 0.0,
        }
    )
    world = build_world(
        oracles, pretrained, data, True, {"target": "hepg2", "off_target_weight": 0.0}, 1
    )
    tokens = encode(data["seq"].tolist()[:3])
    scores = score_sequences(world, tokens)
    from dna.simulator import true_activity

    np.testing.assert_allclose(scores["true_hepg2"], true_activity(tokens)[:, 0])
    assert "atac_prob" not in scores and set(scores["true_accessible"]) <= {0, 1}
    # the designs' truth is set against the truth of the data (its 99.9th percentile)
    data_truth = true_activity(data["seq"].tolist())[:, 0]
    assert world.true_threshold == pytest.approx(np.quantile(data_truth, 0.999))
    best = encode([data["seq"].iloc[int(np.argmax(data_truth))]])  # above the 99.9th pct
    three = torch.cat([best, tokens[:2]]) if int(np.argmax(data_truth)) >= 2 else tokens
    row = summarize(world, three, score_sequences(world, three), "three")
    assert row["true_top_share"] == pytest.approx(100 / 3)
    assert row["oracle_gap"] == pytest.approx(row["pred_activity"] - row["true_activity"])


def test_best_of_n_keeps_the_top_rewards_of_all_draws() -> None:
    class GContent(torch.nn.Module):
        def forward(self, tokens: torch.Tensor) -> torch.Tensor:
            return (tokens == 2).float().mean(1, keepdim=True).expand(len(tokens), 3)

    generator = DNAGenerator(
        channels=8, dilations=[1], kernel_size=3, time_dim=8, length=LENGTH, steps=2
    )
    reward = OracleReward(GContent())
    torch.manual_seed(3)
    kept = best_of_n(generator, reward, budget=50, keep=5, batch_size=16)
    torch.manual_seed(3)
    everything = torch.cat([generator.sample_tokens(n, 16) for n in (16, 16, 16, 2)])
    best = reward(torch.zeros(50, 0), everything).topk(5).values
    torch.testing.assert_close(reward(torch.zeros(5, 0), kept).sort(descending=True).values, best)
    with pytest.raises(GempoError, match="smaller than"):
        best_of_n(generator, reward, budget=3, keep=5)


def test_markdown_leaves_out_empty_columns() -> None:
    table = format_markdown(
        [{"name": "a", "num": 2, "pred_activity": 1.23456, "true_activity": float("nan")}]
    )
    assert table.splitlines()[0] == "| method | n | Pred-Act (eval) |"
    assert "1.235" in table


def test_evaluate_cli_config_writes_three_tables(
    parts: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    fasta = write_fasta(tmp_path / "designs.fasta", ["ACGTACGTACGTACGT", "GGGGCCCCAAAATTTT"])
    overrides = [
        f"data.path={parts['data']}",
        f"oracle.finetune={parts['finetune']}",
        f"oracle.eval={parts['eval']}",
        f"oracle.atac={parts['atac']}",
        "oracle.audit=null",
        f"pretrained={parts['generator']}",
        f"inputs=[{fasta},{parts['generator']}]",
        "best_of_n=12",
        "num_samples=6",
        "log_lik_times=2",
    ]
    cfg = compose_config("dna_evaluate", overrides)
    rows = evaluate(cfg)
    assert [r["name"] for r in rows] == ["pretrained", "best-of-N (N=12)", "designs", "gen"]
    assert [r["num"] for r in rows] == [6, 6, 2, 6]
    saved = json.loads((tmp_path / "evaluation.json").read_text())["rows"]
    assert saved[2]["hamming"] == pytest.approx(
        metrics.mean_pairwise_hamming(encode(["ACGTACGTACGTACGT", "GGGGCCCCAAAATTTT"]))
    )
    assert (tmp_path / "evaluation.md").read_text().count("\n| ") == 5  # header + 4 rows
    assert len(pd.read_csv(tmp_path / "evaluation.csv")) == 4

    bad = compose_config("dna_evaluate", [*overrides, "num_samples=0"])
    with pytest.raises(GempoError, match="num_samples must be >= 1"):
        evaluate(bad)
