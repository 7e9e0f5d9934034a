"""Notebooks are committed without outputs; ``pytest`` itself executes them (nbmake)."""

import json

import pytest

from tests.conftest import REPO_ROOT

NOTEBOOKS = sorted((REPO_ROOT / "notebooks").glob("*.ipynb"))


def test_the_documented_notebooks_are_there():
    assert [p.name for p in NOTEBOOKS] == [
        "control_curves.ipynb",
        "explore_sequences.ipynb",
        "weights_and_measures.ipynb",
    ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_committed_without_outputs(path):
    cells = json.loads(path.read_text())["cells"]
    dirty = [i for i, c in enumerate(cells) if c.get("outputs") or c.get("execution_count")]
    assert not dirty, f"{path.name}: cells {dirty} have outputs; clear them before committing"
