"""Operator and read-back counts of one control update and one action, from ``torch.profiler``:
what a GPU would launch and where it would stall, counted on any device.

    python benchmarks/control_ops.py --label eager
    python benchmarks/control_ops.py --label compiled --compile default
    python benchmarks/control_ops.py --label before --code /path/to/an/older/checkout

Builds ``agent=<agent>`` on ``--env``'s sizes with ``--device``, runs a few warm-up updates on
a random batch (compiling, when asked), then profiles one update (critic and actor) and one
action of each mode. Counted: the outermost ``aten::`` operators outside compiled code, the
optimizer's included (on a GPU each launches at least one kernel), the compiled regions entered
(each runs its fused kernels; under ``reduce-overhead`` on a GPU, one CUDA graph), and the
read-backs
from the device (``aten::_local_scalar_dense``: ``.item()``, ``bool(t)``, ``float(t)``; each
stalls the host on a GPU). ``--code`` imports the agent from another checkout (its configs
too), for a count before a change. Each label's row is merged into
``benchmarks/results/control_ops.{json,md}``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "control_ops"
READ_BACKS = ("item", "tolist", "numpy", "cpu", "__bool__", "__float__", "__int__", "__index__")
"""Tensor methods that read a value back to the host (a GPU sync when the tensor is on it)."""


@contextlib.contextmanager
def read_back_watch(roots: tuple[str, ...], on_read: Callable[[str], None]) -> Iterator[None]:
    """Call ``on_read("file:line")`` for each :data:`READ_BACKS` call made by code in a file
    under ``roots`` (torch's own, e.g. the optimizer's CPU step counters, is not watched)."""
    originals = {name: getattr(torch.Tensor, name) for name in READ_BACKS}

    def watched(name: str) -> Callable:
        original = originals[name]

        def method(self, *args, **kwargs):
            frame = sys._getframe(1)
            if frame.f_code.co_filename.startswith(roots):
                on_read(f"Tensor.{name} at {frame.f_code.co_filename}:{frame.f_lineno}")
            return original(self, *args, **kwargs)

        return method

    try:
        for name in READ_BACKS:
            setattr(torch.Tensor, name, watched(name))
        yield
    finally:
        for name, original in originals.items():
            setattr(torch.Tensor, name, original)


def eager_ops(prof: torch.profiler.profile) -> tuple[Counter, int]:
    """The outermost ``aten::`` operators outside compiled code (the optimizer's included), by
    name, and the number of compiled regions entered."""
    ops, regions = Counter(), 0
    for event in prof.events():
        above = ancestors(event)
        if "Compiled" in event.name and not any("Compiled" in a.name for a in above):
            regions += 1
        if event.name.startswith("aten::") and not any(
            a.name.startswith("aten::") or "Compiled" in a.name for a in above
        ):
            ops[event.name] += 1
    return ops, regions


def ancestors(event) -> list:
    """The profiler events that enclose ``event``, innermost first."""
    out, parent = [], event.cpu_parent
    while parent is not None:
        out.append(parent)
        parent = parent.cpu_parent
    return out


def count(args: argparse.Namespace, code: Path) -> dict:
    """Profile ``agent=<args.agent>`` imported from the checkout ``code`` (already on the path)."""
    from hydra import compose, initialize_config_dir

    from control.agent import build_agent
    from control.replay import Transitions

    overrides = [f"agent={args.agent}", f"env={args.env}", f"device={args.device}"]
    if args.compile:
        overrides.append(f"compile={args.compile}")
    # Hydra's own API rather than gempo.runs.compose_config: older checkouts are profiled too
    with initialize_config_dir(config_dir=str(code / "configs"), version_base="1.3"):
        cfg = compose("control_train", overrides=overrides)
    device = torch.device(args.device)
    torch.manual_seed(0)
    obs_dim, act_dim = args.obs_dim, args.act_dim
    agent = build_agent(cfg, obs_dim=obs_dim, act_dim=act_dim, device=device)
    size = int(cfg.batch_size)
    batch = Transitions(
        torch.randn(size, obs_dim, device=device),
        torch.rand(size, act_dim, device=device) * 2 - 1,
        torch.randn(size, device=device),
        torch.randn(size, obs_dim, device=device),
        torch.zeros(size, device=device),
    )
    obs = torch.randn(1, obs_dim, device=device)
    every = int(cfg.agent.actor_every)
    for _ in range(2 * every):  # warm-up (and compilation)
        agent.update(batch)
        for mode in ("explore", "eval", "eval_raw"):
            agent.act(obs, mode)
    row: dict = {"agent": args.agent, "device": str(device), "compile": args.compile}
    roots = tuple(str(code / name) for name in ("gempo", "control"))
    reads: list[str] = []
    with torch.profiler.profile() as prof, read_back_watch(roots, reads.append):
        for _ in range(every):  # one critic update each, the actor's on the last
            agent.update(batch)
    ops, regions = eager_ops(prof)
    row["update"] = {"aten_ops": sum(ops.values()), "compiled_regions": regions}
    row["update"]["read_backs"] = len(reads)
    row["update"]["top_ops"] = dict(ops.most_common(8))
    row["update"]["read_back_sites"] = dict(Counter(reads))
    for mode in ("explore", "eval"):
        reads = []
        with torch.profiler.profile() as prof, read_back_watch(roots, reads.append):
            agent.act(obs, mode)
        ops, regions = eager_ops(prof)
        row[f"act_{mode}"] = {
            "aten_ops": sum(ops.values()),
            "compiled_regions": regions,
            "read_backs": len(reads),
        }
    return row


def write(label: str, row: dict) -> str:
    """Merge ``row`` under ``label`` into the result files; the markdown table."""
    path = RESULTS.with_suffix(".json")
    rows = json.loads(path.read_text()) if path.is_file() else {}
    rows[label] = row
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rows, indent=1) + "\n")
    lines = [
        "# Control: operators and read-backs per update and per action",
        "",
        "Written by `python benchmarks/control_ops.py` (`torch.profiler`: outermost `aten::` "
        "operators outside compiled code, optimizer included, + compiled regions entered; "
        "read-backs: `.item()`, `bool()`, `float()`, `.cpu()`, ... called by this "
        "project's code). An update is one critic step "
        "plus, on the last of `actor_every` steps, the actor's; counts are for all of them.",
        "",
        "| label | agent | device | compile | update: eager ops + compiled regions | "
        "update: read-backs | act (explore) | act (eval) | act: read-backs |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        act_reads = r["act_explore"]["read_backs"] + r["act_eval"]["read_backs"]
        cells = [
            f"{r[part]['aten_ops']} + {r[part]['compiled_regions']}"
            for part in ("update", "act_explore", "act_eval")
        ]
        lines.append(
            f"| {name} | {r['agent']} | {r['device']} | {r['compile'] or 'eager'} | "
            f"{cells[0]} | {r['update']['read_backs']} | {cells[1]} | {cells[2]} | {act_reads} |"
        )
    text = "\n".join(lines) + "\n"
    RESULTS.with_suffix(".md").write_text(text)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--label", required=True, help="the row's name in the results")
    parser.add_argument("--agent", default="gempo", help="agent config (default: the reference)")
    parser.add_argument("--env", default="walker2d", help="env config (for the record)")
    parser.add_argument("--obs-dim", type=int, default=17, help="Walker2d-v5: 17")
    parser.add_argument("--act-dim", type=int, default=6, help="Walker2d-v5: 6")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--compile", default=None, help="compile mode (default: eager)")
    parser.add_argument("--code", type=Path, default=None, help="a checkout to import from")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    code = (args.code or REPO).resolve()
    sys.path.insert(0, str(code))
    # imported only now, so that gempo, control and configs all come from the same checkout
    from gempo.errors import exit_on_user_error

    print(write(args.label, exit_on_user_error(count)(args, code)))


if __name__ == "__main__":
    main()
