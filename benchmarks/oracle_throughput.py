"""Oracle throughput: sequences scored per second by the shipped oracles and the simulator truth.

    python benchmarks/oracle_throughput.py [--batch-sizes 1 16 64 256 1024] [--seconds 2]

Sweeps batch sizes and CPU thread counts (and the GPU when one is present), writes
``benchmarks/results/oracle_throughput.json`` and prints a table. The JSON records the machine's
load average: on a shared machine the numbers drop with the other processes' load.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import torch

from dna.oracle import SHIPPED_ORACLES, load_oracle
from dna.sequences import SEQ_LEN
from dna.simulator import true_activity
from gempo.runs import atomic_output

RESULTS = Path(__file__).resolve().parent / "results" / "oracle_throughput.json"


def measure(score: Callable[[torch.Tensor], object], batch: torch.Tensor, seconds: float) -> float:
    """Sequences per second of ``score`` on ``batch`` over at least ``seconds`` (after warm-up)."""
    score(batch)
    sync = torch.cuda.synchronize if batch.is_cuda else (lambda: None)
    sync()
    calls, start = 0, time.perf_counter()
    while True:
        score(batch)
        calls += 1
        sync()
        elapsed = time.perf_counter() - start
        if elapsed >= seconds and calls >= 3:
            return calls * len(batch) / elapsed


def score_rows(
    device: str, threads: int, batch_sizes: list[int], seconds: float
) -> list[dict[str, object]]:
    """Rows for the shipped oracles (and, on the CPU, the simulator's truth) on one setting."""
    torch.set_num_threads(threads)
    oracles = {role: load_oracle(path).to(device) for role, path in SHIPPED_ORACLES.items()}
    scorers: dict[str, Callable[[torch.Tensor], object]] = {
        "oracle:finetune": oracles["finetune"], "oracle:atac": oracles["atac"],
    }  # fmt: skip
    if device == "cpu":  # the simulator's ground truth runs on the CPU
        scorers["simulator:true_activity"] = true_activity
    rows: list[dict[str, object]] = []
    for name, score in scorers.items():
        for batch_size in batch_sizes:
            tokens = torch.randint(0, 4, (batch_size, SEQ_LEN), device=device)
            with torch.inference_mode():
                rate = measure(score, tokens, seconds)
            rows.append({"scorer": name, "device": device, "threads": threads,
                         "batch_size": batch_size, "seqs_per_s": round(rate, 1)})  # fmt: skip
    return rows


def run(batch_sizes: list[int], seconds: float, threads: list[int]) -> list[dict[str, object]]:
    """One row per (scorer, device, CPU threads, batch size)."""
    rows: list[dict[str, object]] = []
    for count in threads:
        rows += score_rows("cpu", count, batch_sizes, seconds)
    if torch.cuda.is_available():
        rows += score_rows("cuda", max(threads), batch_sizes, seconds)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16, 64, 256, 640, 1024])
    parser.add_argument("--seconds", type=float, default=2.0, help="timing window per setting")
    parser.add_argument("--threads", type=int, nargs="+", default=sorted({1, os.cpu_count() or 1}),
                        help="torch CPU thread counts to sweep")  # fmt: skip
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    rows = run(args.batch_sizes, args.seconds, args.threads)
    result = {
        "benchmark": "oracle_throughput",
        "unit": "sequences per second (200 bp), inference, torch.inference_mode",
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                    "load_average_1min": round(os.getloadavg()[0], 2), "torch": torch.__version__,
                    "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None},
        "rows": rows,
    }  # fmt: skip
    with atomic_output(args.out) as tmp:
        tmp.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'scorer':<26}{'device':<8}{'threads':>8}{'batch':>7}{'seqs/s':>12}")
    for row in rows:
        print(f"{row['scorer']:<26}{row['device']:<8}{row['threads']:>8}{row['batch_size']:>7}"
              f"{row['seqs_per_s']:>12,.0f}")  # fmt: skip
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
