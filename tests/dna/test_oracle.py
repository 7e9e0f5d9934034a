"""Oracles: shapes, checkpoints, Hydra configs, the shipped assets and a tiny training run."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate

from dna import simulator as sim
from dna.analysis import kmer_labels
from dna.oracle import (
    ASSETS_DIR,
    SHIPPED_ORACLES,
    AccessibilityClassifier,
    KmerRidgeOracle,
    OracleSet,
    PredActivityOracle,
    load_oracle,
    save_oracle,
)
from dna.oracle_training import provenance
from dna.sequences import SEQ_LEN, encode, one_hot, reverse_complement
from gempo.errors import GempoError
from gempo.runs import compose_config

REPO = Path(__file__).resolve().parents[2]
TINY = {"channels": 8, "hidden": 16, "num_blocks": 1}
shipped = pytest.mark.skipif(
    not all(p.is_file() for p in SHIPPED_ORACLES.values()), reason="shipped oracles not built"
)


def tokens(n: int = 5, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 4, (n, SEQ_LEN), generator=torch.Generator().manual_seed(seed))


def test_forward_shapes_tokens_and_one_hot():
    torch.manual_seed(0)
    net = PredActivityOracle(**TINY).eval()
    x = tokens()
    out = net(x)
    assert out.shape == (5, 3)
    assert torch.allclose(out, net(one_hot(x)), atol=1e-6)  # one-hot input gives the same output
    relaxed = one_hot(x).requires_grad_(True)
    net(relaxed)[:, 0].sum().backward()  # gradients flow to a relaxed one-hot input
    assert relaxed.grad is not None and relaxed.grad.shape == (5, 4, SEQ_LEN)
    with pytest.raises(GempoError, match="sequence length 100, expected 200"):
        net(tokens()[:, :100])
    classifier = AccessibilityClassifier(**TINY).eval()
    assert classifier(x).shape == (5,)
    accessible = classifier.predict_accessible(x)
    assert accessible.dtype == torch.bool and accessible.shape == (5,)


def test_save_load_round_trip(tmp_path):
    torch.manual_seed(1)
    net = PredActivityOracle(**TINY).eval()
    path = tmp_path / "o.pt"
    digest = save_oracle(net, path, {"note": "test"})
    assert len(digest) == 64 and not list(tmp_path.glob(".*.tmp"))
    loaded = load_oracle(path)
    assert isinstance(loaded, PredActivityOracle) and not loaded.training
    assert not any(p.requires_grad for p in loaded.parameters())
    assert torch.allclose(loaded(tokens()), net(tokens()), atol=1e-6)


def test_load_errors(tmp_path):
    with pytest.raises(GempoError, match="not found"):
        load_oracle(tmp_path / "missing.pt")
    garbage = tmp_path / "garbage.pt"
    garbage.write_text("not a checkpoint")
    with pytest.raises(GempoError, match="not a readable PyTorch checkpoint"):
        load_oracle(garbage)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(GempoError, match="not an oracle checkpoint"):
        load_oracle(other)
    mismatched = tmp_path / "mismatch.pt"
    save_oracle(PredActivityOracle(**TINY), mismatched)
    payload = torch.load(mismatched, weights_only=True)
    payload["kwargs"]["hidden"] = 32
    torch.save(payload, mismatched)
    with pytest.raises(GempoError, match="weights do not match"):
        load_oracle(mismatched)


def test_oracle_config_with_a_user_model(tmp_path):
    path = tmp_path / "mine.pt"
    save_oracle(PredActivityOracle(**TINY), path)
    overrides = [
        f"oracle.finetune={path}",
        "oracle.eval={_target_:dna.oracle.PredActivityOracle,channels:8,hidden:16,num_blocks:1}",
        "oracle.atac=null",
    ]
    cfg = compose_config("dna_oracle", overrides)
    oracles = instantiate(cfg.oracle)
    assert isinstance(oracles, OracleSet) and oracles.atac is None
    assert oracles.finetune(tokens()).shape == oracles.eval(tokens()).shape == (5, 3)
    assert not oracles.eval.training
    assert not any(p.requires_grad for p in oracles.eval.parameters())


def test_kmer_oracle_counts_each_kmer_with_its_reverse_complement():
    rng = np.random.default_rng(3)
    seqs = ["".join(rng.choice(list("ACGT"), 12)) for _ in range(6)]
    oracle = KmerRidgeOracle(k=3, seq_len=12)
    counts = oracle.counts(encode(seqs))
    index = {word: i for i, word in enumerate(kmer_labels(3))}
    for row, seq in zip(counts, seqs, strict=True):
        expected = torch.zeros(64)
        for i in range(len(seq) - 2):
            word = seq[i : i + 3]
            expected[index[word]] += 1
            expected[index[reverse_complement(word)]] += 1
        torch.testing.assert_close(row, expected)
    torch.testing.assert_close(oracle.counts(one_hot(encode(seqs))), counts)  # one-hot in
    with torch.no_grad():
        oracle.weight.normal_()
        oracle.bias.fill_(0.5)
    x = encode(seqs)
    torch.testing.assert_close(oracle(x), oracle.features(x) @ oracle.weight + 0.5)


@shipped
def test_shipped_oracles_from_config_and_manifest():
    cfg = compose_config("dna_oracle", ["oracle=pred_activity"])
    atac_cfg = compose_config("dna_oracle", ["oracle=atac"])
    oracles = instantiate(cfg.oracle)
    assert isinstance(oracles.finetune, PredActivityOracle)
    assert oracles.finetune.world == oracles.eval.world == "simulated"  # shipped files
    assert oracles.finetune.source != oracles.eval.source
    assert isinstance(oracles.atac, AccessibilityClassifier)
    assert isinstance(instantiate(atac_cfg.oracle), AccessibilityClassifier)
    manifest = json.loads((ASSETS_DIR / "manifest.json").read_text())
    for role, path in SHIPPED_ORACLES.items():  # the manifest describes the files shipped
        entry = manifest["oracles"][role]
        assert entry["file"] == path.name and path.stat().st_size < 5_000_000
        assert entry["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest(), role
        assert entry["command"].startswith("python -m dna.oracle")
        # trained on the current simulated world, split by chromosome as the loader did it
        assert entry["data"]["file"].startswith(f"simulated_mpra_v{sim.SIMULATOR_VERSION}_"), role
        assert entry["split"] == "by chromosome", role


@shipped
def test_shipped_oracles_track_the_simulator_truth():
    seqs = sim.simulate_sequences(400, seed=4242)
    truth = sim.true_activity(seqs)[:, 0]
    x = encode(seqs)
    with torch.no_grad():
        finetune = load_oracle(SHIPPED_ORACLES["finetune"])(x)[:, 0].numpy()
        evaluator = load_oracle(SHIPPED_ORACLES["eval"])(x)[:, 0].numpy()
        access = load_oracle(SHIPPED_ORACLES["atac"])(x).numpy()
    assert np.corrcoef(finetune, truth)[0, 1] > 0.8
    assert np.corrcoef(finetune, evaluator)[0, 1] > 0.8
    labels = sim.true_accessibility(seqs) >= 0.5
    assert access[labels].mean() > access[~labels].mean() + 1.0


@shipped
def test_shipped_eval_oracle_disagrees_with_the_reward_on_designed_sequences():
    """Designs of the kind fine-tuning makes (one HepG2 site repeated over the sequence): the
    eval oracle is another model, so it scores them differently from the fine-tune oracle (the
    same file twice would give equal scores to the last bit)."""
    rng = np.random.default_rng(7)
    designs = []
    for site in ("TGTTTACA", "TGTAAACA", "GTTAATGATTAAC"):
        for spacing in (0, 4, 12):
            unit = site + "".join(rng.choice(list("ACGT"), spacing))
            designs.append((unit * (SEQ_LEN // len(unit) + 1))[:SEQ_LEN])
    x = encode(designs)
    with torch.no_grad():
        finetune = load_oracle(SHIPPED_ORACLES["finetune"])(x)[:, 0]
        evaluator = load_oracle(SHIPPED_ORACLES["eval"])(x)[:, 0]
        audit = load_oracle(SHIPPED_ORACLES["audit"])(x)[:, 0]
    assert (finetune - evaluator).abs().max() > 0.5
    assert not torch.allclose(finetune, evaluator, atol=0.05)
    for other in (finetune, evaluator):  # the audit oracle is a third model
        assert (audit - other).abs().max() > 0.5


def compose_training(tmp_path: Path, task: str, extra: list[str] = ()) -> object:
    overrides = [
        f"oracle={task}", f"task={task}", "data.num_sequences=300", "data.batch_size=64",
        "trainer.max_epochs=1", "trainer.enable_progress_bar=false", "truth_eval_size=64",
        "net.channels=8", "net.hidden=16", "net.num_blocks=1", f"export_dir={tmp_path / 'export'}",
        *extra,
    ]  # fmt: skip
    return compose_config("dna_oracle", overrides)


def test_manifest_provenance_names_the_split_the_loader_made():
    assert provenance("first", "chromosome", 0.05) == {
        "split": "by chromosome",
        "trained_on": "chr1-11",
        "validated_on": "other chromosomes (chrX)",
        "tested_on": "chr12-22",
    }
    random = provenance("second", "random", 0.05)
    assert random["split"].startswith("random") and "chr" not in random["trained_on"]
    assert (random["trained_on"], random["tested_on"], random["validated_on"]) == (
        "random half 2 of the rows",
        "random half 1 of the rows",
        "a random 5% of the rows",
    )


@pytest.mark.slow
def test_tiny_training_run_exports_loadable_oracles(tmp_path, monkeypatch):
    from dna.oracle_training import train_from_config

    monkeypatch.setenv("GEMPO_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    summary = train_from_config(compose_training(tmp_path, "pred_activity"))
    assert set(summary) == {"finetune", "eval", "truth"}
    assert "pearson_hepg2" in summary["truth"]["agreement"]
    assert summary["finetune"]["rows"]["test"] == summary["eval"]["rows"]["train"]
    manifest = json.loads((tmp_path / "export" / "manifest.json").read_text())
    assert set(manifest["oracles"]) == {"finetune", "eval"}
    entry = manifest["oracles"]["finetune"]  # the simulated data has chromosomes
    assert entry["world"] == "simulated"
    assert (entry["split"], entry["trained_on"], entry["tested_on"]) == (
        "by chromosome",
        "chr1-11",
        "chr12-22",
    )
    exported = load_oracle(tmp_path / "export" / "pred_activity_eval.pt")
    assert exported(tokens()).shape == (5, 3)
    assert exported.world == "simulated"  # trained on the simulated data, and says so
    lightning_ckpt = tmp_path / "checkpoints" / "finetune" / "best.ckpt"
    assert load_oracle(lightning_ckpt)(tokens()).shape == (5, 3)
    assert (tmp_path / "finetune" / "version_0" / "metrics.csv").is_file()
    atac = compose_training(tmp_path, "atac")
    with pytest.raises(GempoError, match="already holds another run's outputs"):
        train_from_config(atac)  # metrics.json of the run above would be replaced
    atac.overwrite = True
    summary = train_from_config(atac)
    assert 0.0 <= summary["atac"]["metrics"]["test"]["auroc"] <= 1.0
    assert isinstance(load_oracle(tmp_path / "export" / "atac.pt"), AccessibilityClassifier)


@pytest.mark.slow
def test_kmer_audit_oracle_fits_in_closed_form_and_exports(tmp_path, monkeypatch):
    from dna.oracle_training import train_from_config

    monkeypatch.setenv("GEMPO_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    cfg = compose_training(tmp_path, "kmer", ["data.num_sequences=4000", "kmer.k=4"])
    summary = train_from_config(cfg)
    audit = summary["audit"]
    assert audit["half"] == "second" and audit["rows"]["test"] > 0
    by_penalty = audit["metrics"]["ridge_validation_mse"]
    assert audit["metrics"]["validation"]["mse"] == pytest.approx(min(by_penalty.values()))
    # 4-mer counts carry part of the simulated activity's signal (motif sites are k-mers)
    assert audit["metrics"]["test"]["pearson_hepg2"] > 0.3
    assert summary["truth"]["audit"]["pearson_hepg2"] > 0.3
    entry = json.loads((tmp_path / "export" / "manifest.json").read_text())["oracles"]["audit"]
    assert (entry["class"], entry["trained_on"], entry["world"]) == (
        "KmerRidgeOracle",
        "chr12-22",
        "simulated",
    )
    assert entry["buffers"] == 256 * 3 + 2 * 256 + 3
    exported = load_oracle(tmp_path / "export" / "pred_activity_audit.pt")
    assert isinstance(exported, KmerRidgeOracle) and exported(tokens()).shape == (5, 3)


@pytest.mark.slow
def test_cli_reports_bad_data_in_one_line(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("seq,hepg2,k562\nACGT,1,2\n")
    result = subprocess.run(
        [sys.executable, "-m", "dna.oracle", "data=gosai", f"data.path={bad}",
         f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: {bad}: missing column(s) sknsh; found seq, hepg2, k562"
    )
