"""The enhancer generator: gempo's masked discrete diffusion policy over 200 bp, with the dilated
residual 1-D conv denoiser (:class:`gempo.nets.ConvDenoiser`), and its checkpoints.

Three sizes ship as ``configs/model/``: ``small`` (CPU default, ~0.2M parameters, 32 sampling
steps), ``drakes`` (~3.2M parameters, 128 sampling steps, the size of the benchmark of record's
backbone; for a GPU) and ``drakes_release`` (:class:`ReleaseGenerator`: the published benchmark's
pretrained generator, layer for layer, see :mod:`dna.release`). A generator file stores its class
and constructor arguments with the weights, so :func:`load_generator` rebuilds it without a
config. It reads three kinds of file:

- the compact format written by :func:`save_generator` (``dna/assets/generator/*.pt``,
  ``generator.pt`` at the end of ``dna.pretrain`` / ``dna.finetune``);
- a Lightning checkpoint of ``dna.pretrain`` or ``dna.finetune`` (``checkpoints/last.ckpt``):
  the EMA weights when the run kept an EMA, else the trained policy;
- the release's MDLM checkpoint (``pretrained.ckpt``): its EMA weights or its raw ones.

Each loaded generator says which world it belongs to (``world``: ``simulated``, ``real`` or
``None`` when the file does not say; see :mod:`dna.worlds`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from dna.release import (
    MDLMConvBackbone,
    ReleaseDenoiser,
    is_release_checkpoint,
    release_backbone_state,
)
from dna.sequences import SEQ_LEN, VOCAB_SIZE, find_checkpoint, read_checkpoint
from dna.worlds import REAL, shipped_world
from gempo.errors import GempoError
from gempo.nets import ConvDenoiser, module_device
from gempo.policies import MaskedDiffusionPolicy
from gempo.runs import atomic_output

PACKAGE_DIR = Path(__file__).resolve().parent
ASSETS_DIR = PACKAGE_DIR / "assets" / "generator"
SHIPPED_GENERATOR = ASSETS_DIR / "pretrained_small.pt"
CHECKPOINT_FORMAT = "gempo-generator-v1"
CHECKPOINT_KEY = "dna_generator"
"""Key under which a Lightning checkpoint of ``dna.pretrain``/``dna.finetune`` records the
generator's constructor arguments (and, under ``CLASS_KEY``, its class)."""
CLASS_KEY = "dna_generator_class"
WORLD_KEY = "dna_generator_world"


class SequenceGenerator(MaskedDiffusionPolicy):
    """A :class:`~gempo.policies.MaskedDiffusionPolicy` over A/C/G/T built from plain config
    values; subclasses choose the denoiser network.

    ``sample(cond)`` returns tokens ``(batch, length)`` in ``0..3``; ``cond`` is ``(batch, 0)``.
    ``init_kwargs`` records the constructor arguments (saved with the weights);
    ``architecture_keys`` names those that fix the weights' shapes; ``world`` is the world the
    weights were trained in, when a loaded file says so.
    """

    architecture_keys: tuple[str, ...] = ()
    world: str | None = None

    def __init__(
        self, denoiser: nn.Module, length: int, steps: int, temperature: float, values: dict
    ) -> None:
        check_values(
            {"length": length >= 1, "steps": steps >= 1, "temperature": temperature > 0}, values
        )
        super().__init__(
            denoiser, VOCAB_SIZE, int(length), steps=int(steps), temperature=float(temperature)
        )
        self.init_kwargs: dict[str, Any] = values

    def num_parameters(self) -> int:
        """Number of trainable parameters of the denoiser."""
        return sum(p.numel() for p in self.denoiser.parameters() if p.requires_grad)

    @torch.no_grad()
    def sample_tokens(
        self, num: int, batch_size: int = 128, device: torch.device | str = "cpu"
    ) -> Tensor:
        """``num`` sequences ``(num, length)`` drawn in batches of ``batch_size``."""
        if num < 0 or batch_size < 1:
            raise GempoError(
                f"sample_tokens: need num >= 0 and batch_size >= 1, got {num}, {batch_size}"
            )
        chunks = [
            self.sample(torch.zeros(min(batch_size, num - start), 0, device=device))
            for start in range(0, num, batch_size)
        ]
        return torch.cat(chunks) if chunks else torch.zeros(0, self.length, dtype=torch.long)

    @torch.no_grad()
    def log_likelihood_batched(
        self, tokens: Tensor, num_times: int = 32, batch_size: int = 128
    ) -> Tensor:
        """ELBO estimate of ``log p(x)`` per sequence (nats), ``(num,)``, in batches, computed
        on the model's device and returned on the tokens' device."""
        device = module_device(self)
        parts = [
            self.log_likelihood(tokens[i : i + batch_size].to(device), num_times).to(tokens.device)
            for i in range(0, len(tokens), batch_size)
        ]
        return torch.cat(parts) if parts else torch.zeros(0)


def check_values(checks: dict[str, bool], values: dict[str, Any]) -> None:
    """Raise a one-line error naming the first ``model.<name>`` whose check failed."""
    for name, ok in checks.items():
        if not ok:
            raise GempoError(f"model.{name}: invalid value {values[name]!r} ({_EXPECTED[name]})")


class DNAGenerator(SequenceGenerator):
    """This project's generator: a :class:`~gempo.nets.ConvDenoiser` (dilated residual convs with
    a FiLM-conditioned time embedding)."""

    architecture_keys = ("channels", "dilations", "kernel_size", "time_dim", "length")

    def __init__(
        self,
        channels: int = 64,
        dilations: Sequence[int] = (1, 2, 4, 8, 16, 1, 2, 4),
        kernel_size: int = 5,
        time_dim: int = 64,
        length: int = SEQ_LEN,
        steps: int = 64,
        temperature: float = 1.0,
    ) -> None:
        dilations = [int(d) for d in dilations]
        values = {
            "channels": int(channels),
            "dilations": dilations,
            "kernel_size": int(kernel_size),
            "time_dim": int(time_dim),
            "length": int(length),
            "steps": int(steps),
            "temperature": float(temperature),
        }
        check_values(
            {
                "channels": channels >= 1,
                "dilations": len(dilations) >= 1 and min(dilations) >= 1,
                "kernel_size": kernel_size >= 1 and kernel_size % 2 == 1,
                "time_dim": time_dim >= 2 and time_dim % 2 == 0,
            },
            values,
        )
        denoiser = ConvDenoiser(VOCAB_SIZE, values["channels"], dilations, values["kernel_size"],
                                values["time_dim"])  # fmt: skip
        super().__init__(denoiser, length, steps, temperature, values)


class ReleaseGenerator(SequenceGenerator):
    """The published benchmark's generator architecture (:class:`dna.release.MDLMConvBackbone`,
    about 3.3M parameters with the defaults), so its released weights load and fine-tune."""

    architecture_keys = ("hidden", "kernel_size", "dilations", "stacks", "length")

    def __init__(
        self,
        hidden: int = 128,
        kernel_size: int = 9,
        dilations: Sequence[int] = (1, 1, 4, 16, 64),
        stacks: int = 4,
        dropout: float = 0.0,
        length: int = SEQ_LEN,
        steps: int = 128,
        temperature: float = 1.0,
    ) -> None:
        dilations = [int(d) for d in dilations]
        values = {
            "hidden": int(hidden),
            "kernel_size": int(kernel_size),
            "dilations": dilations,
            "stacks": int(stacks),
            "dropout": float(dropout),
            "length": int(length),
            "steps": int(steps),
            "temperature": float(temperature),
        }
        check_values(
            {
                "hidden": hidden >= 2 and hidden % 2 == 0,
                "kernel_size": kernel_size >= 1 and kernel_size % 2 == 1,
                "dilations": len(dilations) >= 1 and min(dilations) >= 1,
                "stacks": stacks >= 1,
                "dropout": 0.0 <= dropout < 1.0,
            },
            values,
        )
        backbone = MDLMConvBackbone(VOCAB_SIZE + 1, values["hidden"], values["kernel_size"],
                                    dilations, values["stacks"], values["dropout"])  # fmt: skip
        super().__init__(ReleaseDenoiser(backbone), length, steps, temperature, values)


GENERATOR_CLASSES: dict[str, type[SequenceGenerator]] = {
    "DNAGenerator": DNAGenerator,
    "ReleaseGenerator": ReleaseGenerator,
}

_EXPECTED = {
    "channels": "expected an integer >= 1",
    "hidden": "expected an even integer >= 2",
    "dilations": "expected a non-empty list of integers >= 1",
    "kernel_size": "expected an odd integer >= 1",
    "time_dim": "expected an even integer >= 2",
    "stacks": "expected an integer >= 1",
    "dropout": "expected a number in [0, 1)",
    "length": "expected an integer >= 1",
    "steps": "expected an integer >= 1 (sampling steps)",
    "temperature": "expected a number > 0",
}


def resolve_generator_path(path: str | Path | None) -> Path:
    """An existing generator file: absolute paths as given; a relative path is tried against the
    working directory, then the ``dna`` package (so ``assets/generator/pretrained_small.pt``
    finds the shipped file)."""
    if path is None or str(path) in ("", "None", "null"):
        raise GempoError("no generator checkpoint given (set pretrained=/path/to/generator.pt)")
    return find_checkpoint(path, "generator")


def generator_payload(generator: SequenceGenerator, meta: dict[str, Any] | None = None) -> dict:
    """The compact checkpoint dict: format tag, class, constructor kwargs, float32 weights, meta
    (with the generator's ``world`` when it is known)."""
    meta = dict(meta or {})
    if generator.world is not None:
        meta.setdefault("world", generator.world)
    return {
        "format": CHECKPOINT_FORMAT,
        "class": type(generator).__name__,
        "kwargs": dict(generator.init_kwargs),
        "state_dict": {
            k: v.detach().cpu().float() if v.is_floating_point() else v.detach().cpu()
            for k, v in generator.state_dict().items()
        },
        "meta": meta,
    }


def save_generator(
    generator: SequenceGenerator, path: str | Path, meta: dict[str, Any] | None = None
) -> str:
    """Write the compact checkpoint atomically; returns its sha256."""
    with atomic_output(path) as tmp:
        torch.save(generator_payload(generator, meta), tmp)
        return hashlib.sha256(tmp.read_bytes()).hexdigest()


def record_generator(checkpoint: dict[str, Any], generator: SequenceGenerator) -> None:
    """Note ``generator``'s class, constructor arguments and world in a Lightning checkpoint of
    ``dna.pretrain`` / ``dna.finetune``, so :func:`load_generator` can rebuild it."""
    checkpoint[CHECKPOINT_KEY] = dict(generator.init_kwargs)
    checkpoint[CLASS_KEY] = type(generator).__name__
    checkpoint[WORLD_KEY] = generator.world


def _generator_class(name: str, path: Path) -> type[SequenceGenerator]:
    if name not in GENERATOR_CLASSES:
        raise GempoError(
            f"{path}: unknown generator class {name!r}; expected one of {list(GENERATOR_CLASSES)}"
        )
    return GENERATOR_CLASSES[name]


def _lightning_state(payload: dict, path: Path) -> dict[str, Tensor]:
    """The generator's state dict from a pretrain/finetune ``.ckpt``: its EMA, else the policy."""
    state = payload.get("state_dict", {})
    for prefix in ("ema.module.", "policy."):
        picked = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        if picked:
            return picked
    raise GempoError(f"{path}: Lightning checkpoint holds no generator weights")


def load_generator(
    path: str | Path | None,
    steps: int | None = None,
    temperature: float | None = None,
    map_location: str | torch.device = "cpu",
    model: dict[str, Any] | None = None,
    ema: bool = True,
) -> SequenceGenerator:
    """Rebuild a generator from a compact ``.pt``, a pretrain/finetune Lightning ``.ckpt`` or the
    release's MDLM checkpoint.

    ``steps``/``temperature`` override the sampling settings stored in the file. A release
    checkpoint records no architecture: it is built as a :class:`ReleaseGenerator`, with the
    values of ``model`` (the ``model=`` config) when that config builds one, else the defaults,
    and gets the release's EMA weights when ``ema`` is true, else its raw weights.
    """
    path = resolve_generator_path(path)
    payload = read_checkpoint(path, map_location, trusted=True)
    world = (payload.get("meta") or {}).get("world")
    release = False
    if payload.get("format") == CHECKPOINT_FORMAT:
        cls = _generator_class(payload.get("class", "DNAGenerator"), path)
        kwargs, state = dict(payload["kwargs"]), payload["state_dict"]
    elif CHECKPOINT_KEY in payload:
        cls = _generator_class(payload.get(CLASS_KEY, "DNAGenerator"), path)
        kwargs, state = dict(payload[CHECKPOINT_KEY]), _lightning_state(payload, path)
        world = payload.get(WORLD_KEY)
    elif is_release_checkpoint(payload):
        cls, state, release, world = ReleaseGenerator, {}, True, REAL
        kwargs = dict(model or {})
        if str(kwargs.pop("_target_", "")).rsplit(".", 1)[-1] != cls.__name__:
            kwargs = {}
    else:
        raise GempoError(
            f"{path}: not a generator checkpoint (expected format {CHECKPOINT_FORMAT!r}, a "
            "checkpoint of dna.pretrain / dna.finetune or the release's MDLM pretrained.ckpt)"
        )
    if steps is not None:
        kwargs["steps"] = steps
    if temperature is not None:
        kwargs["temperature"] = temperature
    generator = cls(**kwargs)
    if release:
        backbone = generator.denoiser.backbone
        state = {
            f"denoiser.backbone.{k}": v
            for k, v in release_backbone_state(payload, backbone, ema, path).items()
        }
    try:
        generator.load_state_dict(state)
    except RuntimeError as err:
        lines = str(err).splitlines()
        first = lines[1].strip() if len(lines) > 1 else lines[0]
        raise GempoError(
            f"{path}: weights do not match the recorded architecture ({first})"
        ) from err
    generator.world = world or shipped_world(path, ASSETS_DIR)
    return generator.to(map_location)


def check_architecture(generator: SequenceGenerator, model_cfg: dict[str, Any], where: str) -> None:
    """Raise a one-line error when ``generator`` (loaded from ``where``) is of another class or
    was built with other shapes than the configured model (``model=`` group)."""
    target = str(model_cfg.get("_target_", "")).rsplit(".", 1)[-1]
    if target and target != type(generator).__name__:
        raise GempoError(
            f"{where} is a {type(generator).__name__}, but model= builds a {target}; pass the "
            "model= option of this checkpoint (model=drakes_release for the release's generator)"
        )
    for key in generator.architecture_keys:
        if key not in model_cfg:
            continue
        want = list(model_cfg[key]) if key == "dilations" else model_cfg[key]
        have = generator.init_kwargs[key]
        if want != have:
            raise GempoError(
                f"{where} was built with {key}={have}, but model.{key}={want}; pass the matching "
                "model= option or a checkpoint of this model (pretrained=...)"
            )
