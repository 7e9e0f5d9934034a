"""``oracle=grelu``: tiny gReLU models of the release's class, saved as the release was, load
through the adapter and predict what gReLU predicts. Needs the ``grelu`` extra (installed in CI)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hydra.utils import instantiate

from dna.evaluate import build_world
from dna.grelu_oracles import GreluAccessibility, GreluOracle
from dna.model import ReleaseGenerator, load_generator
from dna.sequences import one_hot
from dna.worlds import REAL
from gempo.errors import GempoError
from gempo.runs import compose_config
from tests.conftest import REPO_ROOT
from tests.dna.test_release import release_shapes, write_release_checkpoint

grelu_lightning = pytest.importorskip("grelu.lightning", reason="needs the grelu extra")
pl = pytest.importorskip("pytorch_lightning")

TINY_ENFORMER = {  # the release's model class, at a size a test can build
    "model_type": "EnformerModel",
    "n_conv": 3,
    "channels": 384,
    "n_transformers": 1,
    "n_heads": 4,
    "key_len": 8,
    "crop_len": 0,
}


def save_grelu(path: Path, n_tasks: int, task: str, names: list[str] | None, seed: int) -> Path:
    """A ``grelu.lightning.LightningModel`` saved by a Lightning trainer (as the release was)."""
    torch.manual_seed(seed)
    model = grelu_lightning.LightningModel(
        model_params={**TINY_ENFORMER, "n_tasks": n_tasks},
        train_params={"task": task, "loss": "mse" if task == "regression" else "bce"},
    )
    if names is not None:
        model.data_params["tasks"] = {"name": names}
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False)
    trainer.strategy.connect(model)
    trainer.save_checkpoint(path)
    return path


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("grelu")
    names = ["hepg2", "k562", "sknsh"]
    return {
        "finetune": save_grelu(folder / "reward_oracle_ft.ckpt", 3, "regression", names, 0),
        "eval": save_grelu(folder / "reward_oracle_eval.ckpt", 3, "regression", names, 1),
        "atac": save_grelu(folder / "binary_atac_cell_lines.ckpt", 7, "binary", None, 2),
    }


def reference(path: Path) -> torch.nn.Module:
    return grelu_lightning.LightningModel.load_from_checkpoint(path, weights_only=False).eval()


def test_adapter_predicts_what_grelu_predicts(release: dict[str, Path]) -> None:
    tokens = torch.randint(0, 4, (5, 200))
    oracle = GreluOracle(release["finetune"]).eval()
    with torch.no_grad():
        expected = reference(release["finetune"])(one_hot(tokens))[:, :, 0]
        torch.testing.assert_close(oracle(tokens), expected)
        torch.testing.assert_close(oracle(one_hot(tokens)), expected)  # one-hot input too
        # tasks by name follow the checkpoint's task list
        by_name = GreluOracle(release["finetune"], ["sknsh", "hepg2", "k562"]).eval()
        torch.testing.assert_close(by_name(tokens), expected[:, [2, 0, 1]])
        atac = GreluAccessibility(release["atac"], task=1).eval()
        probability = reference(release["atac"])(one_hot(tokens))[:, 1, 0]
        torch.testing.assert_close(atac.predict_proba(tokens), probability)
        assert torch.equal(atac.predict_accessible(tokens), probability >= 0.5)
    assert oracle.world == REAL and oracle.source == str(release["finetune"])
    with pytest.raises(GempoError, match="no task 'liver'"):
        GreluOracle(release["finetune"], ["liver"])
    with pytest.raises(GempoError, match="task 7 out of range"):
        GreluAccessibility(release["atac"], task=7)


def test_oracle_grelu_config_and_world_guard(release: dict[str, Path]) -> None:
    overrides = [
        "oracle=grelu",
        f"oracle.finetune={release['finetune']}",
        f"oracle.eval={release['eval']}",
        f"oracle.atac={release['atac']}",
    ]
    cfg = compose_config("dna_finetune", overrides)
    oracles = instantiate(cfg.oracle)
    tokens = torch.randint(0, 4, (4, 200))
    # the two Pred-Activity oracles are different models, frozen
    assert not torch.allclose(oracles.finetune(tokens), oracles.eval(tokens))
    assert not any(p.requires_grad for p in oracles.finetune.parameters())
    # real-world oracles with the simulated world's data stop in one line
    with pytest.raises(GempoError, match="oracle.finetune belongs to the real world"):
        build_world(oracles, ReleaseGenerator(hidden=8, stacks=1, steps=2), None, True, {})
    same = compose_config("dna_finetune", [*overrides, f"oracle.eval={release['finetune']}"])
    with pytest.raises(GempoError, match="the same model"):
        build_world(instantiate(same.oracle), ReleaseGenerator(hidden=8, stacks=1), None, False, {})


@pytest.mark.slow
def test_real_benchmark_runs_end_to_end(release: dict[str, Path], tmp_path: Path) -> None:
    """benchmarks/real_benchmark.py on stand-ins in the release's formats: released-format
    gReLU oracles, a release-format generator checkpoint and a data file in Gosai's columns."""
    folder = tmp_path / "release"
    folder.mkdir()
    for role, name in (("finetune", "reward_oracle_ft"), ("eval", "reward_oracle_eval"),
                       ("atac", "binary_atac_cell_lines")):  # fmt: skip
        (folder / f"{name}.ckpt").symlink_to(release[role])
    write_release_checkpoint(folder / "pretrained.ckpt", release_shapes())
    rng = np.random.default_rng(0)
    seqs = ["".join(rng.choice(list("ACGT"), 200)) for _ in range(300)]
    activity = {c: rng.normal(size=300).round(3) for c in ("hepg2", "k562", "sknsh")}
    pd.DataFrame({"seq": seqs, **activity}).to_csv(tmp_path / "gosai_all.csv", index=False)
    out = tmp_path / "out"
    command = [
        sys.executable, str(REPO_ROOT / "benchmarks" / "real_benchmark.py"),
        "--release", str(folder), "--data", str(tmp_path / "gosai_all.csv"),
        "--seeds", "0", "1", "--num-samples", "8", "--sampling-steps", "2", "--out", str(out),
        "--finetune-set", "group_size=8", "trainer.max_steps=2", "updates_per_batch=1",
        "objective.loss_times=1", "final.log_lik_times=2", "final.batch_size=8",
        "--evaluate-set", "log_lik_times=2", "sample_batch_size=8",
    ]  # fmt: skip
    subprocess.run(command, check=True, cwd=tmp_path, capture_output=True, text=True)
    rows = json.loads((out / "real_benchmark.json").read_text())["rows"]
    names = {(row["name"], row["seed"]) for row in rows}
    assert {("pretrained", 0), ("best-of-N", 1)} <= names
    assert any(name.startswith("GeMPO") for name, _ in names)
    for row in rows:  # the benchmark's five metrics, no ground truth in the real world
        for metric in ("pred_activity", "atac_acc", "kmer3_corr", "motif_corr", "app_log_lik"):
            assert metric in row
        assert "true_activity" not in row and row["num"] == 8
    best = [r for r in rows if r["name"] == "best-of-N"]
    assert all(r["oracle_calls"] == 16 for r in best)  # 2 steps x 8 sequences, at least 8
    table = (out / "real_benchmark.md").read_text()
    assert "| hepg2 | GeMPO" in table and "| hepg2 | best-of-N |" in table
    generator = load_generator(out / "gempo-seed0" / "generator.pt")
    assert isinstance(generator, ReleaseGenerator) and generator.world == REAL
    # the released generator was fine-tuned: its weights moved
    assert not torch.equal(
        generator.denoiser.backbone.linear.weight,
        load_generator(folder / "pretrained.ckpt").denoiser.backbone.linear.weight,
    )

    # a missing file: one line, no traceback
    (folder / "pretrained.ckpt").unlink()
    failed = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True)
    assert failed.returncode == 2
    assert failed.stderr.strip().endswith("missing pretrained.ckpt")
