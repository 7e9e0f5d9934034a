"""Enhancer activity data: the Gosai et al. MPRA files and the embedded simulated MPRA.

Both worlds share one format: a CSV (optionally ``.gz``) with columns ``seq, hepg2, k562, sknsh``
(``gosai_all.csv``), plus ``chrom`` in the raw ``dataset.csv.gz``; the simulated set also has
``accessible`` (a 0/1 HepG2 ATAC label).
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler

from dna.sequences import ALPHABET, SEQ_LEN, encode
from gempo.errors import GempoError
from gempo.runs import atomic_output

log = logging.getLogger(__name__)

ACTIVITY_COLUMNS = ("hepg2", "k562", "sknsh")
REQUIRED_COLUMNS = ("seq", *ACTIVITY_COLUMNS)
OPTIONAL_COLUMNS = ("chrom", "accessible")
DEFAULT_NUM_SEQUENCES = 50_000
TOP_FRACTION = 0.001
"""The benchmark's "top 0.1%": the reference set for naturalness, and (as the 99.9th percentile
of the target activity) the threshold a design should exceed."""
FIRST_HALF = frozenset(range(1, 12))  # chr1-11
SECOND_HALF = frozenset(range(12, 23))  # chr12-22


def cache_dir() -> Path:
    """Where generated data is cached: ``$GEMPO_CACHE`` or ``~/.cache/gempo``."""
    return Path(os.environ.get("GEMPO_CACHE") or Path.home() / ".cache" / "gempo")


def simulated_dataset_path(
    num_sequences: int = DEFAULT_NUM_SEQUENCES, seed: int = 0, directory: str | Path | None = None
) -> Path:
    """Path of the simulated MPRA CSV (``.csv.gz``), written on first use and reused after.

    The file name carries the simulator version, size and seed, so a changed simulator never
    reuses a stale file. ``directory`` defaults to :func:`cache_dir`.
    """
    from dna.simulator import SIMULATOR_VERSION, simulate_mpra

    folder = Path(directory) if directory is not None else cache_dir()
    path = folder / f"simulated_mpra_v{SIMULATOR_VERSION}_n{num_sequences}_seed{seed}.csv.gz"
    if not path.is_file():
        log.info("simulating %d MPRA sequences (seed %d) into %s", num_sequences, seed, path)
        frame = simulate_mpra(num_sequences, seed)
        with atomic_output(path) as tmp:
            frame.to_csv(tmp, index=False, compression="gzip")
    return path


def simulated_truth(path: Path, seqs: Sequence[str]) -> np.ndarray:
    """The simulator's true activity ``(num, 3)`` of the simulated data file ``path``'s
    sequences ``seqs``: computed once (about 20 s for 50k sequences on one core) and kept next
    to the file (``<file>.truth.npy``)."""
    from dna.simulator import true_activity

    cache = path.parent / f"{path.name}.truth.npy"
    if cache.is_file():
        truth = np.load(cache)
        if truth.shape == (len(seqs), len(ACTIVITY_COLUMNS)):
            return truth
    truth = true_activity(list(seqs))
    with atomic_output(cache) as tmp:
        with tmp.open("wb") as handle:
            np.save(handle, truth)
    return truth


def _read_table(path: Path) -> pd.DataFrame:
    """Read a CSV/CSV.GZ as strings, with a clear error for a missing or empty file."""
    if not path.is_file():
        raise GempoError(f"{path}: enhancer data file not found")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError as err:
        raise GempoError(
            f"{path}: file is empty (expected a header 'seq,hepg2,k562,sknsh')"
        ) from err
    except (UnicodeDecodeError, OSError, pd.errors.ParserError) as err:
        raise GempoError(f"{path}: not a readable CSV file ({err})") from err
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise GempoError(
            f"{path}: missing column(s) {', '.join(missing)}; found {', '.join(frame.columns)}"
        )
    if frame.empty:
        raise GempoError(f"{path}: no data rows after the header")
    return frame


def _row_problems(frame: pd.DataFrame, seq_len: int | None) -> tuple[pd.Series, pd.DataFrame]:
    """Per-row validation: ``(problem message or '', numeric frame)``; vectorised over rows."""
    seqs = frame["seq"].str.strip().str.upper()
    problem = pd.Series("", index=frame.index)
    bad_char = seqs.str.contains(f"[^{ALPHABET}]", regex=True)
    for row in np.flatnonzero(bad_char.to_numpy()):
        seq = seqs.iat[row]
        col = re.search(f"[^{ALPHABET}]", seq).start()
        problem.iat[row] = f"seq: character {seq[col]!r} at position {col} is not one of {ALPHABET}"
    if seq_len is not None:
        wrong = (seqs.str.len() != seq_len) & (problem == "")
        lengths = seqs.str.len()
        problem[wrong] = "seq: length " + lengths[wrong].astype(str) + f", expected {seq_len}"
    empty = (seqs == "") & (problem == "")
    problem[empty] = "seq: empty sequence"
    numeric = pd.DataFrame({"seq": seqs})
    for column in ACTIVITY_COLUMNS + tuple(c for c in ("accessible",) if c in frame.columns):
        values = pd.to_numeric(frame[column].str.strip(), errors="coerce")
        bad = (~np.isfinite(values.to_numpy(dtype=np.float64))) & (problem == "").to_numpy()
        problem[bad] = (
            f"{column}: value " + frame[column][bad].map(repr) + " is not a finite number"
        )
        numeric[column] = values
    return problem, numeric


def load_enhancers(
    path: str | Path, skip_invalid: bool = False, seq_len: int | None = SEQ_LEN
) -> pd.DataFrame:
    """Read an enhancer activity CSV/CSV.GZ into a validated DataFrame.

    Returns columns ``seq`` (upper-case ACGT), ``hepg2, k562, sknsh`` (float), plus ``chrom``
    (str) and ``accessible`` (int 0/1) when the file has them. A bad row (character outside
    ACGT, length other than ``seq_len``, non-numeric activity) raises GempoError naming the row,
    unless ``skip_invalid``: then such rows are dropped and their number is logged and stored in
    ``frame.attrs["skipped_rows"]``.
    """
    path = Path(path)
    raw = _read_table(path)
    problem, frame = _row_problems(raw, seq_len)
    bad_rows = np.flatnonzero((problem != "").to_numpy())
    if len(bad_rows) and not skip_invalid:
        row = int(bad_rows[0])
        raise GempoError(
            f"{path}: row {row} (line {row + 2}): {problem.iat[row]} "
            f"({len(bad_rows)} bad rows; pass skip_invalid=True to drop them)"
        )
    if "chrom" in raw.columns:
        frame["chrom"] = raw["chrom"].str.strip()
    if len(bad_rows):
        log.warning("%s: skipped %d of %d rows (first: row %d: %s)", path, len(bad_rows),
                    len(raw), bad_rows[0], problem.iat[int(bad_rows[0])])  # fmt: skip
        frame = frame.drop(index=frame.index[bad_rows])
        if frame.empty:
            raise GempoError(f"{path}: all {len(raw)} rows are invalid (first: {problem.iat[0]})")
    frame = frame.reset_index(drop=True)
    if "accessible" in frame.columns:
        frame["accessible"] = frame["accessible"].astype(np.int64)
    frame.attrs["skipped_rows"] = len(bad_rows)
    frame.attrs["source"] = str(path)
    return frame


def top_fraction_reference(
    frame: pd.DataFrame, fraction: float = TOP_FRACTION, column: str = "hepg2"
) -> list[str]:
    """The most active ``fraction`` of sequences by ``column`` (at least one), most active first.

    With the default arguments this is the "top 0.1% by HepG2" reference set of the naturalness
    metrics (3-mer and motif-count correlations).
    """
    if not 0.0 < fraction <= 1.0:
        raise GempoError(f"top_fraction_reference: fraction must be in (0, 1], got {fraction}")
    if column not in frame.columns:
        raise GempoError(f"top_fraction_reference: no column {column!r} in {list(frame.columns)}")
    count = max(1, math.ceil(fraction * len(frame)))
    return frame.nlargest(count, column)["seq"].tolist()


HALF_NAMES = {"first": "chr1-11", "second": "chr12-22"}


class HalfSplit(NamedTuple):
    """Two disjoint halves (each oracle trains on one and is tested on the other) + validation;
    ``by``: how they were made, ``"chromosome"`` or ``"random"``. The fine-tune oracle and
    everything training reads (anchor data, the 3-mer constraint's reference) come from
    ``first``; the eval oracle and the reported naturalness metrics' reference from ``second``."""

    first: pd.DataFrame
    second: pd.DataFrame
    validation: pd.DataFrame
    by: str

    def name(self, half: str) -> str:
        """``first``/``second`` in words (:func:`half_name`)."""
        return half_name(half, self.by)


def half_name(half: str, split_by: str) -> str:
    """Half ``first``/``second`` of a split made ``by`` chromosome or at random, in words:
    ``chr1-11``, or ``random half 1 of the rows``."""
    if split_by == "chromosome":
        return HALF_NAMES[half]
    return f"random half {1 if half == 'first' else 2} of the rows"


def chromosome_number(chrom: pd.Series) -> pd.Series:
    """``chr7``/``7`` -> 7; non-autosomes (``chrX``, ``chrM``, ...) -> -1."""
    digits = chrom.astype(str).str.extract(r"^(?:chr)?(\d+)$", flags=re.IGNORECASE)[0]
    return pd.to_numeric(digits, errors="coerce").fillna(-1).astype(int)


def split_by_chromosome(frame: pd.DataFrame) -> HalfSplit:
    """Split by chromosome: chr1-11 (first), chr12-22 (second), all others (validation)."""
    if "chrom" not in frame.columns:
        raise GempoError(
            "split_by_chromosome: the data has no 'chrom' column (gosai_all.csv lacks it; use the "
            "raw dataset.csv.gz or a random split)"
        )
    number = chromosome_number(frame["chrom"])
    first = frame[number.isin(FIRST_HALF)].reset_index(drop=True)
    second = frame[number.isin(SECOND_HALF)].reset_index(drop=True)
    validation = frame[~number.isin(FIRST_HALF | SECOND_HALF)].reset_index(drop=True)
    return HalfSplit(first, second, validation, "chromosome")


def split_randomly(frame: pd.DataFrame, val_fraction: float = 0.05, seed: int = 0) -> HalfSplit:
    """Random halves plus a ``val_fraction`` validation set (for data without ``chrom``)."""
    order = np.random.default_rng(seed).permutation(len(frame))
    n_val = int(round(val_fraction * len(frame)))
    rest = order[n_val:]
    half = len(rest) // 2
    pick = lambda idx: frame.iloc[np.sort(idx)].reset_index(drop=True)  # noqa: E731
    return HalfSplit(pick(rest[:half]), pick(rest[half:]), pick(order[:n_val]), "random")


def configured_halves(frame: pd.DataFrame, data_cfg: Any) -> HalfSplit:
    """:func:`split_halves` as the ``data=`` config splits for the oracles (its
    ``val_fraction`` and ``seed``, which only a random split uses), so that training, reports
    and the oracles agree on the halves."""
    return split_halves(
        frame, float(data_cfg.get("val_fraction", 0.05)), int(data_cfg.get("seed", 0))
    )


def split_halves(frame: pd.DataFrame, val_fraction: float = 0.05, seed: int = 0) -> HalfSplit:
    """:func:`split_by_chromosome` when ``chrom`` exists, else :func:`split_randomly`."""
    if "chrom" in frame.columns:
        split = split_by_chromosome(frame)
        if len(split.first) and len(split.second) and len(split.validation):
            return split
        log.warning("chromosome split leaves an empty part; using a random split instead")
    return split_randomly(frame, val_fraction, seed)


class EnhancerTensors(Dataset):
    """Pre-tokenised enhancers, indexed by a list of row indices (one batch at a time).

    An item is a dict: ``tokens`` LongTensor ``(batch, length)``, ``activity`` FloatTensor
    ``(batch, 3)`` (hepg2, k562, sknsh) and, when labelled, ``accessible`` FloatTensor ``(batch,)``.
    """

    def __init__(self, frame: pd.DataFrame):
        self.tokens = (
            encode(frame["seq"].tolist()) if len(frame) else torch.zeros(0, SEQ_LEN).long()
        )
        self.activity = torch.tensor(frame[list(ACTIVITY_COLUMNS)].to_numpy(np.float32))
        self.accessible = (
            torch.tensor(frame["accessible"].to_numpy(np.float32))
            if "accessible" in frame.columns
            else None
        )

    def __len__(self) -> int:
        return len(self.tokens)

    def __getitem__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        index = torch.as_tensor(indices, dtype=torch.long)
        item = {"tokens": self.tokens[index], "activity": self.activity[index]}
        if self.accessible is not None:
            item["accessible"] = self.accessible[index]
        return item


class EnhancerDataModule(pl.LightningDataModule):
    """Enhancer data for Lightning: batches are dicts from :class:`EnhancerTensors`.

    ``path=None`` uses the simulated MPRA (``num_sequences``, ``seed``). ``half`` picks the
    training rows: ``"first"`` (chr1-11; test = chr12-22), ``"second"`` (the reverse) or ``"all"``
    (both halves; no test set). Validation is the remaining chromosomes, or a random
    ``val_fraction`` when the file has no ``chrom`` column.
    """

    def __init__(
        self,
        path: str | Path | None = None,
        half: str = "all",
        batch_size: int = 256,
        num_workers: int = 0,
        num_sequences: int = DEFAULT_NUM_SEQUENCES,
        seed: int = 0,
        val_fraction: float = 0.05,
        skip_invalid: bool = False,
    ):
        super().__init__()
        if half not in ("first", "second", "all"):
            raise GempoError(f"data.half: expected 'first', 'second' or 'all', got {half!r}")
        self.path, self.half, self.batch_size = path, half, batch_size
        self.num_workers, self.num_sequences, self.seed = num_workers, num_sequences, seed
        self.val_fraction, self.skip_invalid = val_fraction, skip_invalid
        self.frame: pd.DataFrame | None = None
        self.splits: dict[str, EnhancerTensors] = {}
        self.split_by: str | None = None  # "chromosome" or "random", once set up

    def resolved_path(self) -> Path:
        """The CSV this module reads (the simulated set is written on first use)."""
        if self.path is None:
            return simulated_dataset_path(self.num_sequences, self.seed)
        return Path(self.path)

    def setup(self, stage: str | None = None) -> None:
        """Load, split and tokenise once."""
        if self.splits:
            return
        self.frame = load_enhancers(self.resolved_path(), skip_invalid=self.skip_invalid)
        split = split_halves(self.frame, self.val_fraction, self.seed)
        self.split_by = split.by
        if self.half == "first":
            train, test = split.first, split.second
        elif self.half == "second":
            train, test = split.second, split.first
        else:
            train, test = pd.concat([split.first, split.second], ignore_index=True), split.first[:0]
        self.splits = {
            "train": EnhancerTensors(train),
            "val": EnhancerTensors(split.validation),
            "test": EnhancerTensors(test),
        }

    def _loader(self, name: str, shuffle: bool) -> DataLoader:
        data = self.splits[name]
        sampler = RandomSampler(data) if shuffle else SequentialSampler(data)
        return DataLoader(
            data,
            sampler=BatchSampler(sampler, self.batch_size, drop_last=False),
            batch_size=None,
            num_workers=self.num_workers,
            pin_memory=torch.cuda.is_available(),
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)
