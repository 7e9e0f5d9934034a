"""The release's generator (``model=drakes_release``): checkpoints in the release's format load,
sample, give the NELBO of the release's parameterisation, and fine-tune; worlds do not mix."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf

from dna.model import ReleaseGenerator, load_generator
from dna.oracle import OracleSet
from dna.release import MDLMConvBackbone
from dna.worlds import REAL, SIMULATED, check_worlds
from gempo.errors import GempoError
from gempo.paths import MaskedPath
from tests.conftest import REPO_ROOT

HIDDEN = 128
LAYERS = 20  # 4 stacks x 5 dilations


def release_shapes(hidden: int = HIDDEN, layers: int = LAYERS, vocab: int = 5) -> dict:
    """The release backbone's parameter names and shapes in its registration order (the order of
    its ``state_dict`` and of its EMA's list), written out from its description."""
    shapes = {
        "linear.weight": (hidden, vocab, 9),
        "linear.bias": (hidden,),
        "time_embedder.0.W": (hidden // 2,),
        "time_embedder.1.weight": (hidden, hidden),
        "time_embedder.1.bias": (hidden,),
    }
    for kind, weight in (("convs", (hidden, hidden, 9)), ("time_layers", (hidden, hidden)),
                         ("norms", (hidden,))):  # fmt: skip
        name = f"{kind}.{{}}.dense" if kind == "time_layers" else f"{kind}.{{}}"
        for i in range(layers):
            shapes[f"{name.format(i)}.weight"] = weight
            shapes[f"{name.format(i)}.bias"] = (hidden,)
    return shapes | {
        "final_conv.0.weight": (hidden, hidden, 1),
        "final_conv.0.bias": (hidden,),
        "final_conv.2.weight": (vocab, hidden, 1),
        "final_conv.2.bias": (vocab,),
    }


def write_release_checkpoint(path: Path, shapes: dict, seed: int = 0) -> tuple[dict, list]:
    """An MDLM-style Lightning checkpoint: random ``backbone.*`` weights, a different EMA over
    the trainable ones (all but the Fourier frequencies), and a pickled config object in the
    hyperparameters (as the release has). Returns the raw weights and the EMA list."""
    gen = torch.Generator().manual_seed(seed)
    raw = {name: 0.05 * torch.randn(shape, generator=gen) for name, shape in shapes.items()}
    ema = [raw[n] + 0.01 for n in shapes if not n.endswith(".W")]
    config = OmegaConf.create({"backbone": "cnn", "model": {"hidden_size": HIDDEN}})
    torch.save(
        {
            "state_dict": {f"backbone.{k}": v for k, v in raw.items()},
            "ema": {"shadow_params": ema, "decay": 0.9999, "num_updates": 10},
            "hyper_parameters": {"config": config},
            "pytorch-lightning_version": "2.2.1",
        },
        path,
    )
    return raw, ema


@pytest.fixture(scope="module")
def release_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, list]:
    path = tmp_path_factory.mktemp("release") / "pretrained.ckpt"
    raw, ema = write_release_checkpoint(path, release_shapes())
    return path, raw, ema


def test_release_architecture_has_the_release_names_shapes_and_layer_order() -> None:
    backbone = ReleaseGenerator().denoiser.backbone
    shapes = {k: tuple(v.shape) for k, v in backbone.state_dict().items()}
    assert list(shapes.items()) == list(release_shapes().items())
    # the release repeats each dilation once per stack, in a row
    assert [conv.dilation[0] for conv in backbone.convs] == [1] * 8 + [4] * 4 + [16] * 4 + [64] * 4
    assert 3.2e6 < ReleaseGenerator().num_parameters() < 3.4e6


@pytest.mark.parametrize("ema", [True, False])
def test_release_checkpoint_loads_ema_or_raw_weights(release_file, ema: bool) -> None:
    path, raw, shadow = release_file
    generator = load_generator(path, ema=ema)
    assert isinstance(generator, ReleaseGenerator) and generator.world == REAL
    state = generator.denoiser.backbone.state_dict()
    trainable = [n for n in release_shapes() if not n.endswith(".W")]
    expected = dict(zip(trainable, shadow, strict=True)) if ema else raw
    for name in trainable:
        torch.testing.assert_close(state[name], expected[name])
    torch.testing.assert_close(state["time_embedder.0.W"], raw["time_embedder.0.W"])


def test_release_denoiser_is_subs_without_time_conditioning(release_file) -> None:
    generator = load_generator(release_file[0])
    backbone: MDLMConvBackbone = generator.denoiser.backbone
    x_t = torch.randint(0, 5, (3, 200))
    logits = generator.denoiser(x_t, torch.tensor([0.1, 0.5, 0.9]))
    # SUBS: the mask token gets probability 0; the backbone always sees time 0
    full = backbone(x_t, torch.zeros(3))
    full[..., 4] = float("-inf")
    expected = torch.log_softmax(full, -1)[..., :4]
    torch.testing.assert_close(torch.log_softmax(logits, -1), expected)
    torch.testing.assert_close(generator.denoiser(x_t, torch.ones(3)), logits)


def test_release_sampling_and_nelbo(release_file) -> None:
    generator = load_generator(release_file[0], steps=8)
    torch.manual_seed(0)
    tokens = generator.sample_tokens(4, batch_size=2)
    assert tokens.shape == (4, 200) and 0 <= int(tokens.min()) and int(tokens.max()) <= 3
    # the NELBO at one masked point is the any-order ELBO term of the release's logits
    path = MaskedPath(4)
    point = path.sample(tokens, torch.tensor([50, 100, 150, 200]))
    loss = path.per_sample_loss(generator.denoiser(point.x_t, point.t), point)
    full = generator.denoiser.backbone(point.x_t, torch.zeros(4))
    full[..., 4] = float("-inf")
    nll = -torch.log_softmax(full, -1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    expected = 200 / point.num_masked * (nll * point.is_masked).sum(-1)
    torch.testing.assert_close(loss, expected)
    assert torch.isfinite(generator.log_likelihood(tokens, num_times=2)).all()


def test_release_checkpoint_errors_are_one_line(tmp_path: Path, release_file) -> None:
    shapes = release_shapes()
    shapes["convs.0.weight"] = (HIDDEN, HIDDEN, 5)  # another kernel size
    write_release_checkpoint(tmp_path / "other.ckpt", shapes)
    with pytest.raises(GempoError, match="do not match the recorded architecture"):
        load_generator(tmp_path / "other.ckpt", ema=False)
    payload = torch.load(release_file[0], weights_only=False)
    del payload["ema"]
    torch.save(payload, tmp_path / "no_ema.ckpt")
    with pytest.raises(GempoError, match="pretrained_ema=false"):
        load_generator(tmp_path / "no_ema.ckpt")
    assert load_generator(tmp_path / "no_ema.ckpt", ema=False).world == REAL


class Oracle(torch.nn.Module):
    def __init__(self, world: str | None, source: str | None = None, seq_len: int = 200):
        super().__init__()
        self.world, self.source, self.seq_len = world, source, seq_len

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return torch.zeros(len(tokens), 3)


def test_world_guard_stops_mixed_worlds() -> None:
    generator = ReleaseGenerator(hidden=8, stacks=1, dilations=[1], steps=2)
    generator.world = REAL
    real = OracleSet(Oracle(REAL, "ft.ckpt"), Oracle(REAL, "eval.ckpt"), None)
    check_worlds(REAL, real, generator, 200)  # one world: fine
    with pytest.raises(GempoError, match="pretrained belongs to the real world but the data is "):
        check_worlds(SIMULATED, OracleSet(Oracle(None), Oracle(None), None), generator, 200)
    simulated = OracleSet(Oracle(SIMULATED), Oracle(SIMULATED), None)
    with pytest.raises(GempoError, match="oracle.finetune belongs to the simulated world.*grelu"):
        check_worlds(REAL, simulated, generator, 200)
    same = OracleSet(Oracle(REAL, "ft.ckpt"), Oracle(REAL, "ft.ckpt"), None)
    with pytest.raises(GempoError, match="oracle.finetune and oracle.eval are the same model"):
        check_worlds(REAL, same, generator, 200)
    short = OracleSet(Oracle(REAL, "a"), Oracle(REAL, "b", seq_len=230), None)
    with pytest.raises(GempoError, match="oracle.eval works on 230-bp sequences"):
        check_worlds(REAL, short, generator, 200)


@pytest.mark.slow
def test_shipped_oracles_with_a_data_file_stop_in_one_line(tmp_path: Path) -> None:
    """The shipped (simulated-world) oracles and generator with a real data file: one line."""
    rng = np.random.default_rng(0)
    seqs = ["".join(rng.choice(list("ACGT"), 200)) for _ in range(50)]
    pd.DataFrame({"seq": seqs, "hepg2": 1.0, "k562": 0.0, "sknsh": 0.0}).to_csv(
        tmp_path / "data.csv", index=False
    )
    result = subprocess.run(
        [sys.executable, "-m", "dna.finetune", "data=gosai", f"data.path={tmp_path / 'data.csv'}",
         f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=REPO_ROOT, capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith("error: oracle.finetune belongs to the simulated world but the data is real")
    )
