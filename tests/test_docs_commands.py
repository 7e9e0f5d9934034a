"""Every command shown in README.md and docs/ still parses and composes.

Hydra entry points (``python -m dna.finetune ...``) run with ``--cfg job``: Hydra composes the
config with the shown overrides and prints it without training, so a renamed option or
config group fails here. Benchmark scripts run with ``--help``. ``pip install`` and
``pytest`` are what CI itself runs. Commands with a ``<placeholder>`` need a run folder the
reader made; their module and overrides other than the placeholder are still checked.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT

DOCS = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
PLACEHOLDER = re.compile(r"<[^>]+>")
COMMAND_LINE = re.compile(r"^\s*(?:[A-Z_]+=\S*\s+)*python\s")


def shown_commands() -> list[tuple[str, str]]:
    """``(where, command)`` for each ``python ...`` line in a fenced block of the docs."""
    found = []
    for doc in DOCS:
        in_block = False
        for line in doc.read_text().splitlines():
            if line.lstrip().startswith("```"):
                in_block = not in_block
                continue
            if not (in_block and COMMAND_LINE.match(line)):
                continue
            words = shlex.split(line.split("  #")[0], comments=True)
            while re.fullmatch(r"[A-Z_]+=\S*", words[0]):
                words = words[1:]  # environment assignments such as MUJOCO_GL=egl
            found.append((doc.name, shlex.join(words)))
    return found


def checkable(command: str) -> list[str]:
    """The command turned into a dry run: compose-only for Hydra apps, --help for scripts."""
    words = shlex.split(command)[1:]
    if words[0] != "-m":
        return [sys.executable, words[0], "--help"]
    module, overrides = words[1], words[2:]
    multirun = "-m" in overrides
    kept = []
    for override in overrides:
        if override == "-m" or PLACEHOLDER.search(override):
            continue
        key, _, value = override.partition("=")
        if multirun and "," in value:
            value = value.split(",")[0]  # one job of the sweep
        kept.append(f"{key}={value}" if _ else override)
    return [sys.executable, "-m", module, *kept, "--cfg", "job"]


COMMANDS = shown_commands()


def test_docs_show_the_entry_points():
    shown = " ".join(command for _, command in COMMANDS)
    for module in ("dna.finetune", "control.train"):
        assert f"-m {module}" in shown, f"no doc shows python -m {module}"


@pytest.mark.slow
@pytest.mark.parametrize(("where", "command"), COMMANDS, ids=[c for _, c in COMMANDS])
def test_documented_command_composes(where, command):
    result = subprocess.run(
        checkable(command), cwd=REPO_ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, f"{where}: `{command}` fails:\n{result.stderr[-2000:]}"
