"""The enhancer generator: gempo's masked discrete diffusion policy over 200 bp, with the dilated
residual 1-D conv denoiser (:class:`gempo.nets.ConvDenoiser`), and its checkpoints.

Two sizes ship as ``configs/model/``: ``small`` (CPU default, ~0.2M parameters, 32 sampling steps)
and ``drakes`` (~3.2M parameters, 128 sampling steps, the size of the benchmark of record's
backbone; for a GPU). A generator file stores the constructor arguments with the weights, so
:func:`load_generator` rebuilds it without a config. It reads three kinds of file:

- the compact format written by :func:`save_generator` (``dna/assets/generator/*.pt``,
  ``generator.pt`` at the end of ``dna.pretrain`` / ``dna.finetune``);
- a Lightning checkpoint of ``dna.pretrain`` or ``dna.finetune`` (``checkpoints/last.ckpt``):
  the EMA weights when the run kept an EMA, else the trained policy.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from dna.sequences import SEQ_LEN, VOCAB_SIZE, find_checkpoint, read_checkpoint
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
generator's constructor arguments."""
ARCHITECTURE_KEYS = ("channels", "dilations", "kernel_size", "time_dim", "length")
"""Constructor arguments that fix the weights' shapes (``steps``/``temperature`` do not)."""


class DNAGenerator(MaskedDiffusionPolicy):
    """A :class:`~gempo.policies.MaskedDiffusionPolicy` over A/C/G/T with a
    :class:`~gempo.nets.ConvDenoiser`, built from plain config values.

    ``sample(cond)`` returns tokens ``(batch, length)`` in ``0..3``; ``cond`` is ``(batch, 0)``.
    ``init_kwargs`` records the constructor arguments (saved with the weights).
    """

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
        dilations = tuple(int(d) for d in dilations)
        checks = {
            "channels": channels >= 1,
            "dilations": len(dilations) >= 1 and min(dilations) >= 1,
            "kernel_size": kernel_size >= 1 and kernel_size % 2 == 1,
            "time_dim": time_dim >= 2 and time_dim % 2 == 0,
            "length": length >= 1,
            "steps": steps >= 1,
            "temperature": temperature > 0,
        }
        values = {
            "channels": channels,
            "dilations": list(dilations),
            "kernel_size": kernel_size,
            "time_dim": time_dim,
            "length": length,
            "steps": steps,
            "temperature": temperature,
        }
        for name, ok in checks.items():
            if not ok:
                raise GempoError(
                    f"model.{name}: invalid value {values[name]!r} ({_EXPECTED[name]})"
                )
        denoiser = ConvDenoiser(
            VOCAB_SIZE, int(channels), dilations, int(kernel_size), int(time_dim)
        )
        super().__init__(
            denoiser, VOCAB_SIZE, int(length), steps=int(steps), temperature=float(temperature)
        )
        self.init_kwargs: dict[str, Any] = {
            "channels": int(channels),
            "dilations": list(dilations),
            "kernel_size": int(kernel_size),
            "time_dim": int(time_dim),
            "length": int(length),
            "steps": int(steps),
            "temperature": float(temperature),
        }

    def num_parameters(self) -> int:
        """Number of trainable parameters of the denoiser."""
        return sum(p.numel() for p in self.denoiser.parameters())

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


_EXPECTED = {
    "channels": "expected an integer >= 1",
    "dilations": "expected a non-empty list of integers >= 1",
    "kernel_size": "expected an odd integer >= 1",
    "time_dim": "expected an even integer >= 2",
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


def generator_payload(generator: DNAGenerator, meta: dict[str, Any] | None = None) -> dict:
    """The compact checkpoint dict: format tag, constructor kwargs, float32 weights, meta."""
    return {
        "format": CHECKPOINT_FORMAT,
        "kwargs": dict(generator.init_kwargs),
        "state_dict": {
            k: v.detach().cpu().float() if v.is_floating_point() else v.detach().cpu()
            for k, v in generator.state_dict().items()
        },
        "meta": meta or {},
    }


def save_generator(
    generator: DNAGenerator, path: str | Path, meta: dict[str, Any] | None = None
) -> str:
    """Write the compact checkpoint atomically; returns its sha256."""
    with atomic_output(path) as tmp:
        torch.save(generator_payload(generator, meta), tmp)
        return hashlib.sha256(tmp.read_bytes()).hexdigest()


def _lightning_state(payload: dict, path: Path) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """Constructor kwargs and the generator's state dict from a pretrain/finetune ``.ckpt``."""
    kwargs = payload[CHECKPOINT_KEY]
    state = payload.get("state_dict", {})
    for prefix in ("ema.module.", "policy."):
        picked = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        if picked:
            return dict(kwargs), picked
    raise GempoError(f"{path}: Lightning checkpoint holds no generator weights")


def load_generator(
    path: str | Path | None,
    steps: int | None = None,
    temperature: float | None = None,
    map_location: str | torch.device = "cpu",
) -> DNAGenerator:
    """Rebuild a generator from a compact ``.pt`` or a pretrain/finetune Lightning ``.ckpt``.

    ``steps``/``temperature`` override the sampling settings stored in the file.
    """
    path = resolve_generator_path(path)
    payload = read_checkpoint(path, map_location)
    if payload.get("format") == CHECKPOINT_FORMAT:
        kwargs, state = dict(payload["kwargs"]), payload["state_dict"]
    elif CHECKPOINT_KEY in payload:
        kwargs, state = _lightning_state(payload, path)
    else:
        raise GempoError(
            f"{path}: not a generator checkpoint (expected format {CHECKPOINT_FORMAT!r} or a "
            "checkpoint of dna.pretrain / dna.finetune)"
        )
    if steps is not None:
        kwargs["steps"] = steps
    if temperature is not None:
        kwargs["temperature"] = temperature
    generator = DNAGenerator(**kwargs)
    try:
        generator.load_state_dict(state)
    except RuntimeError as err:
        lines = str(err).splitlines()
        first = lines[1].strip() if len(lines) > 1 else lines[0]
        raise GempoError(
            f"{path}: weights do not match the recorded architecture ({first})"
        ) from err
    return generator.to(map_location)


def check_architecture(generator: DNAGenerator, model_cfg: dict[str, Any], where: str) -> None:
    """Raise a one-line error when ``generator`` (loaded from ``where``) was built with other
    shapes than the configured model (``model=`` group)."""
    for key in ARCHITECTURE_KEYS:
        if key not in model_cfg:
            continue
        want = list(model_cfg[key]) if key == "dilations" else model_cfg[key]
        have = generator.init_kwargs[key]
        if want != have:
            raise GempoError(
                f"{where} was built with {key}={have}, but model.{key}={want}; pass the matching "
                "model= option or a checkpoint of this model (pretrained=...)"
            )
