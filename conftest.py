"""Session-wide test tiers: the notebooks (executed by nbmake) belong to the slow tier, and they
run on outputs of their own, never on runs that happen to lie in this checkout."""

from __future__ import annotations

import os
import tempfile

import pytest


def pytest_configure(config: pytest.Config) -> None:
    os.environ["GEMPO_CONTROL_RUNS"] = tempfile.mkdtemp(prefix="gempo_test_runs_")  # empty
    os.environ.pop("GEMPO_FINETUNE_RUN", None)  # the notebook makes its own small run


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.suffix == ".ipynb":
            item.add_marker(pytest.mark.slow)
