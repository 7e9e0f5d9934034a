"""Shared test setup: deterministic torch on few threads, repo paths."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _seed_torch() -> None:
    torch.manual_seed(0)
