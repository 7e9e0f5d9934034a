"""The generator: construction from the model configs, checkpoints, and pretraining."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hydra.utils import instantiate

from dna.model import (
    SHIPPED_GENERATOR,
    DNAGenerator,
    check_architecture,
    load_generator,
    save_generator,
)
from dna.pretrain import MaskedDiffusionPretraining, learning_rate_factor, pretrain
from gempo.errors import GempoError
from gempo.runs import check_group_choices, compose_config

TINY = {
    "channels": 8,
    "dilations": [1, 2],
    "kernel_size": 3,
    "time_dim": 8,
    "length": 12,
    "steps": 3,
}


@pytest.mark.parametrize(
    ("model", "low", "high", "steps"), [("small", 2e5, 4e5, 32), ("drakes", 3.0e6, 3.6e6, 128)]
)
def test_model_configs_build_the_documented_sizes(
    model: str, low: float, high: float, steps: int
) -> None:
    generator = instantiate(compose_config("dna_pretrain", [f"model={model}"]).model)
    assert isinstance(generator, DNAGenerator)
    assert low < generator.num_parameters() < high
    assert generator.steps == steps and generator.length == 200


def test_sample_tokens_shapes_and_range() -> None:
    generator = DNAGenerator(**TINY)
    tokens = generator.sample_tokens(7, batch_size=3)
    assert tokens.shape == (7, 12) and tokens.dtype == torch.long
    assert int(tokens.min()) >= 0 and int(tokens.max()) <= 3
    # an untrained (zero-output) denoiser is uniform: the ELBO's expectation is -length * log 4
    log_lik = generator.log_likelihood_batched(tokens, num_times=16, batch_size=4)
    assert log_lik.shape == (7,)
    assert log_lik.mean().item() == pytest.approx(-12 * np.log(4.0), rel=0.2)


def test_save_load_round_trip_keeps_outputs(tmp_path: Path) -> None:
    generator = DNAGenerator(**TINY)
    torch.nn.init.normal_(generator.denoiser.out.weight)  # non-trivial outputs
    digest = save_generator(generator, tmp_path / "g.pt", meta={"note": "x"})
    assert len(digest) == 64
    loaded = load_generator(tmp_path / "g.pt", steps=5)
    assert loaded.steps == 5 and loaded.init_kwargs["channels"] == 8
    x = torch.randint(0, 5, (4, 12))
    t = torch.rand(4)
    torch.testing.assert_close(loaded.denoiser(x, t), generator.denoiser(x, t))


def test_bad_values_and_files_give_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(GempoError, match="model.kernel_size"):
        DNAGenerator(**{**TINY, "kernel_size": 4})
    with pytest.raises(GempoError, match="model.steps"):
        DNAGenerator(**{**TINY, "steps": 0})
    with pytest.raises(GempoError, match="not found"):
        load_generator(tmp_path / "missing.pt")
    with pytest.raises(GempoError, match="no generator checkpoint"):
        load_generator(None)
    (tmp_path / "junk.pt").write_text("not a checkpoint")
    with pytest.raises(GempoError, match="not a readable"):
        load_generator(tmp_path / "junk.pt")
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(GempoError, match="not a generator checkpoint"):
        load_generator(tmp_path / "other.pt")
    with pytest.raises(GempoError, match="channels=8, but model.channels=64"):
        check_architecture(DNAGenerator(**TINY), {"channels": 64}, "g.pt")


def test_unknown_group_choice_is_one_line() -> None:
    check_group_choices(["oracle=pred_activity", "weight=exp,linear", "seed=3"])
    with pytest.raises(
        GempoError, match="oracle=nope: unknown oracle config; expected one of .*pred_activity"
    ):
        check_group_choices(["oracle=nope"])
    with pytest.raises(GempoError, match="weight=cubic: unknown weight config"):
        check_group_choices(["weight=exp,cubic"])


@pytest.mark.skipif(not SHIPPED_GENERATOR.is_file(), reason="shipped generator not built yet")
def test_shipped_generator_loads_with_its_manifest() -> None:
    import json

    manifest = json.loads((SHIPPED_GENERATOR.parent / "manifest.json").read_text())
    entry = manifest[SHIPPED_GENERATOR.name]
    assert entry["bytes"] == SHIPPED_GENERATOR.stat().st_size < 10_000_000
    generator = load_generator(SHIPPED_GENERATOR)
    assert generator.init_kwargs["channels"] == entry["model"]["channels"]


def write_enhancers(path: Path, num: int, length: int, seed: int = 0) -> Path:
    """A small enhancer CSV (seq, hepg2, k562, sknsh) of random sequences."""
    rng = np.random.default_rng(seed)
    seqs = ["".join(rng.choice(list("ACGT"), length, p=[0.4, 0.1, 0.1, 0.4])) for _ in range(num)]
    activity = rng.normal(size=(num, 3))
    frame = pd.DataFrame(
        {"seq": seqs, "hepg2": activity[:, 0], "k562": activity[:, 1], "sknsh": activity[:, 2]}
    )
    frame.to_csv(path, index=False)
    return path


@pytest.mark.slow
def test_pretrain_lowers_the_nelbo_and_exports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = write_enhancers(tmp_path / "data.csv", 96, 200)  # data loading checks 200 bp
    tmp_path = tmp_path / "run"  # the run folder (outside Hydra: the working directory)
    tmp_path.mkdir()
    monkeypatch.chdir(tmp_path)
    overrides = [
        f"data.path={data}",
        "data.batch_size=32",
        "model.channels=16",
        "model.dilations=[1,2]",
        "model.time_dim=16",
        "trainer.max_steps=30",
        "trainer.val_check_interval=30",
        "trainer.limit_val_batches=1",
        "trainer.accelerator=cpu",
        "trainer.enable_progress_bar=false",
        "warmup_steps=1",
        "optimizer.lr=0.02",
        "ema_decay=0.5",
        "checkpoint_every=10",
        "export_dir=exported",
    ]
    record = pretrain(compose_config("dna_pretrain", overrides))
    assert record["optimizer_steps"] == 30
    # data with 40% A/T each: a model of the composition alone beats uniform (277 nats)
    assert record["val_nelbo"] < 200 * np.log(4.0) - 5
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
    from_ckpt = load_generator(tmp_path / "checkpoints" / "last.ckpt")
    exported = load_generator(tmp_path / "exported" / "pretrained_custom.pt")
    x, t = torch.randint(0, 5, (2, 200)), torch.rand(2)
    torch.testing.assert_close(from_ckpt.denoiser(x, t), exported.denoiser(x, t))
    assert from_ckpt.world == exported.world == "real"  # a data file: the real world
    with pytest.raises(GempoError, match="pretrained_custom.pt already exist"):
        pretrain(compose_config("dna_pretrain", [*overrides, "resume=true"]))
    more = [*overrides, "resume=true", "overwrite=true", "trainer.max_steps=40", "decay_steps=40"]
    resumed = pretrain(compose_config("dna_pretrain", more))
    assert resumed["optimizer_steps"] == 40  # the record says where the run resumed, and from what
    assert resumed["resumed_from"]["checkpoint_step"] == 30
    assert resumed["resumed_from"]["earlier"]["optimizer_steps"] == 30


def test_learning_rate_warms_up_then_decays_to_zero_on_a_cosine() -> None:
    assert learning_rate_factor(0, 10, None) == pytest.approx(0.1)
    assert learning_rate_factor(500, 10, None) == 1.0  # constant without decay_steps
    factors = [learning_rate_factor(s, 10, 100) for s in range(10, 130)]
    assert factors[0] == pytest.approx(0.5 * (1 + np.cos(np.pi * 0.1)))
    assert all(a >= b for a, b in zip(factors, factors[1:], strict=False))  # monotone decay
    assert learning_rate_factor(50, 10, 100) == pytest.approx(0.5)  # half-way: half the rate
    assert learning_rate_factor(100, 10, 100) == learning_rate_factor(120, 10, 100) == 0.0
    module = MaskedDiffusionPretraining(
        instantiate(compose_config("dna_pretrain", ["model.channels=8"]).model),
        lambda params: torch.optim.SGD(params, lr=1.0),
        warmup_steps=1,
        decay_steps=4,
    )
    configured = module.configure_optimizers()
    schedule = configured["lr_scheduler"]["scheduler"]
    rates = []
    for _ in range(5):
        rates.append(schedule.get_last_lr()[0])
        configured["optimizer"].step()
        schedule.step()
    assert rates == pytest.approx(
        [1.0, 0.5 * (1 + np.cos(np.pi / 4)), 0.5, 0.5 * (1 - np.cos(np.pi / 4)), 0.0]
    )
    with pytest.raises(GempoError, match="decay_steps"):
        MaskedDiffusionPretraining(module.generator, lambda p: None, decay_steps=0)
