"""Wall-clock time per named section of an update, synchronized with the GPU when enabled."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager

import torch


class SectionTimer:
    """Accumulates seconds per section (``critic``, ``actor_sample``, ``actor_step``, ...).

    Disabled, it costs nothing; enabled on a GPU it synchronizes around each section so the
    times are the device's, which slows training a little (use it for benchmarks).
    """

    def __init__(self, enabled: bool = False, device: torch.device | None = None) -> None:
        self.enabled = enabled
        self.cuda = device is not None and device.type == "cuda"
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)

    @contextmanager
    def section(self, name: str) -> Iterator[None]:
        if not self.enabled:
            yield
            return
        if self.cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        yield
        if self.cuda:
            torch.cuda.synchronize()
        self.seconds[name] += time.perf_counter() - start
        self.calls[name] += 1

    def mean_ms(self) -> dict[str, float]:
        """Mean milliseconds per call of each section."""
        return {name: 1e3 * s / max(self.calls[name], 1) for name, s in self.seconds.items()}

    def reset(self) -> None:
        self.seconds.clear()
        self.calls.clear()
