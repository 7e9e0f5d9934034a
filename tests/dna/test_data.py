"""Sequences, FASTA and the enhancer data loader (real Gosai format and the simulated default)."""

from __future__ import annotations

import gzip
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from dna.data import (
    EnhancerDataModule,
    configured_halves,
    load_enhancers,
    simulated_dataset_path,
    simulated_truth,
    split_by_chromosome,
    split_halves,
    split_randomly,
    top_fraction_reference,
)
from dna.sequences import (
    SEQ_LEN,
    decode,
    encode,
    one_hot,
    read_fasta,
    reverse_complement,
    write_fasta,
)
from dna.simulator import true_activity
from gempo.errors import GempoError


def random_seqs(n: int, length: int = SEQ_LEN, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return ["".join(rng.choice(list("ACGT"), size=length)) for _ in range(n)]


def write_csv(path: Path, rows: list[dict], gz: bool = False) -> Path:
    text = pd.DataFrame(rows).to_csv(index=False)
    if gz:
        with gzip.open(path, "wt") as handle:
            handle.write(text)
    else:
        path.write_text(text)
    return path


def real_rows(n: int = 6, chrom: bool = False) -> list[dict]:
    rows = []
    for i, seq in enumerate(random_seqs(n)):
        row = {"seq": seq, "hepg2": 0.5 * i, "k562": -0.1 * i, "sknsh": 1.0}
        if chrom:
            row["chrom"] = ["chr1", "chr12", "chrX", "chr7", "chr22", "chr3"][i % 6]
        rows.append(row)
    return rows


# --- sequences -------------------------------------------------------------------------------


def test_encode_decode_round_trip_and_one_hot():
    seqs = random_seqs(5, length=17)
    tokens = encode(seqs)
    assert tokens.dtype == torch.long and tokens.shape == (5, 17)
    assert int(tokens.min()) >= 0 and int(tokens.max()) <= 3
    assert decode(tokens) == seqs
    assert encode(["acgt"]).tolist() == [[0, 1, 2, 3]]
    hot = one_hot(tokens)
    assert hot.shape == (5, 4, 17) and hot.dtype == torch.float32
    assert torch.equal(hot.sum(1), torch.ones(5, 17))
    assert torch.equal(hot.argmax(1), tokens)


def test_encode_names_bad_character_and_length():
    with pytest.raises(GempoError, match=r"sequence 1: character 'N' at position 2"):
        encode(["ACGT", "ACNT"])
    with pytest.raises(GempoError, match=r"sequence 1: length 3, expected 4"):
        encode(["ACGT", "ACG"])
    with pytest.raises(GempoError, match="token values"):
        decode(torch.tensor([[0, 4]]))


def test_reverse_complement():
    assert reverse_complement("AACGT") == "ACGTT"


def test_fasta_round_trip(tmp_path):
    seqs = random_seqs(3)
    path = write_fasta(tmp_path / "out" / "x.fasta", seqs, ids=["a", "b", "c"])
    assert read_fasta(path) == seqs
    assert path.read_text().startswith(">a\n")
    assert not list(path.parent.glob(".*.tmp"))  # the atomic write left no temporary file


def test_fasta_errors(tmp_path):
    bad = tmp_path / "bad.fa"
    bad.write_text(">one\nACGT\n>two\nACXT\n")
    with pytest.raises(GempoError, match=r"bad.fa: record 1 \(two\): character 'X' at position 2"):
        read_fasta(bad)
    empty = tmp_path / "empty.fa"
    empty.write_text("")
    with pytest.raises(GempoError, match="no FASTA records"):
        read_fasta(empty)
    with pytest.raises(GempoError, match="not found"):
        read_fasta(tmp_path / "missing.fa")


# --- loader ----------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True])
def test_load_real_format(tmp_path, gz):
    rows = real_rows(6, chrom=gz)
    path = write_csv(tmp_path / ("dataset.csv.gz" if gz else "gosai_all.csv"), rows, gz=gz)
    frame = load_enhancers(path)
    assert list(frame.columns[:4]) == ["seq", "hepg2", "k562", "sknsh"]
    assert ("chrom" in frame.columns) == gz
    assert len(frame) == 6 and frame["hepg2"].dtype == np.float64
    assert frame["seq"].tolist() == [r["seq"] for r in rows]
    assert frame.attrs["skipped_rows"] == 0


def test_load_accepts_an_extra_index_column(tmp_path):
    path = tmp_path / "gosai_all.csv"
    pd.DataFrame(real_rows(3)).to_csv(path)  # pandas writes an unnamed index column
    assert len(load_enhancers(path)) == 3


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("seq", "ACGTN" + "A" * 195, r"row 2 \(line 4\): seq: character 'N' at position 4"),
        ("seq", "ACGT" * 10, r"row 2 \(line 4\): seq: length 40, expected 200"),
        ("hepg2", "high", r"row 2 \(line 4\): hepg2: value 'high' is not a finite number"),
        ("k562", "", r"row 2 \(line 4\): k562: value '' is not a finite number"),
    ],
)
def test_load_rejects_bad_rows(tmp_path, field, value, message):
    rows = real_rows(5)
    rows[2][field] = value
    path = write_csv(tmp_path / "bad.csv", rows)
    with pytest.raises(GempoError, match=message):
        load_enhancers(path)


def test_load_rejects_missing_column_and_empty_file(tmp_path):
    path = write_csv(tmp_path / "cols.csv", [{k: v for k, v in r.items() if k != "sknsh"}
                                             for r in real_rows(2)])  # fmt: skip
    with pytest.raises(GempoError, match=r"cols.csv: missing column\(s\) sknsh; found seq"):
        load_enhancers(path)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(GempoError, match="empty.csv: file is empty"):
        load_enhancers(empty)
    header_only = tmp_path / "header.csv"
    header_only.write_text("seq,hepg2,k562,sknsh\n")
    with pytest.raises(GempoError, match="no data rows"):
        load_enhancers(header_only)
    with pytest.raises(GempoError, match="not found"):
        load_enhancers(tmp_path / "nope.csv")


def test_load_skip_invalid_reports_count(tmp_path, caplog):
    rows = real_rows(6)
    rows[1]["seq"] = "A" * 199
    rows[4]["sknsh"] = "n/a"
    path = write_csv(tmp_path / "mixed.csv", rows)
    with caplog.at_level(logging.WARNING, logger="dna.data"):
        frame = load_enhancers(path, skip_invalid=True)
    assert len(frame) == 4 and frame.attrs["skipped_rows"] == 2
    assert "skipped 2 of 6 rows" in caplog.text
    assert rows[1]["seq"] not in set(frame["seq"])


def test_splits_and_reference():
    frame = pd.DataFrame(real_rows(6, chrom=True))
    split = split_by_chromosome(frame)
    assert set(split.first["chrom"]) == {"chr1", "chr7", "chr3"}
    assert set(split.second["chrom"]) == {"chr12", "chr22"}
    assert set(split.validation["chrom"]) == {"chrX"}
    with pytest.raises(GempoError, match="no 'chrom' column"):
        split_by_chromosome(frame.drop(columns="chrom"))
    big = pd.DataFrame({"seq": random_seqs(100, 10), "hepg2": np.arange(100.0)})
    parts = split_randomly(big, val_fraction=0.1, seed=3)
    assert [len(p) for p in parts[:3]] == [45, 45, 10]
    assert set().union(*(set(p["seq"]) for p in parts[:3])) == set(big["seq"])
    fallback = split_halves(big.assign(chrom="chr1"), 0.1, seed=3)  # one chromosome: no halves
    assert len(fallback.validation) == 10 and fallback.by == "random"
    assert split.by == "chromosome" and split_halves(frame).by == "chromosome"
    top = top_fraction_reference(big, fraction=0.05)
    assert top == big["seq"].iloc[::-1][:5].tolist()
    assert len(top_fraction_reference(big)) == 1  # at least one sequence


def test_datamodule_batches(tmp_path):
    path = write_csv(tmp_path / "d.csv", real_rows(6, chrom=True) * 3)
    data = EnhancerDataModule(path, half="first", batch_size=4)
    data.setup()
    batch = next(iter(data.train_dataloader()))
    assert batch["tokens"].shape == (4, SEQ_LEN) and batch["tokens"].dtype == torch.long
    assert batch["activity"].shape == (4, 3) and batch["activity"].dtype == torch.float32
    assert len(data.splits["train"]) == 9 and len(data.splits["test"]) == 6
    assert len(data.splits["val"]) == 3


def test_simulated_dataset_is_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("GEMPO_CACHE", str(tmp_path))
    path = simulated_dataset_path(num_sequences=40, seed=1)
    assert path.parent == tmp_path and path.name.endswith(".csv.gz")
    frame = load_enhancers(path)
    assert len(frame) == 40 and {"chrom", "accessible"} <= set(frame.columns)
    mtime = path.stat().st_mtime_ns
    assert simulated_dataset_path(num_sequences=40, seed=1) == path
    assert path.stat().st_mtime_ns == mtime  # reused, not rewritten
    data = EnhancerDataModule(None, half="all", batch_size=8, num_sequences=40, seed=1)
    data.setup()
    batch = next(iter(data.val_dataloader()))
    assert batch["accessible"].shape == batch["tokens"].shape[:1]
    # the simulator's truth of the file is computed once and kept next to it
    truth = simulated_truth(path, frame["seq"].tolist())
    np.testing.assert_allclose(truth, true_activity(frame["seq"].tolist()))
    monkeypatch.setattr("dna.simulator.true_activity", lambda seqs: pytest.fail("recomputed"))
    np.testing.assert_array_equal(simulated_truth(path, frame["seq"].tolist()), truth)


def test_configured_halves_are_the_oracles_halves(tmp_path: Path) -> None:
    """Fine-tuning and the reports split a file without chromosomes as the oracles' data module
    did: with the data config's seed and validation share, not the defaults."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "seq": ["".join(rng.choice(list("ACGT"), 200)) for _ in range(60)],
            "hepg2": rng.normal(size=60),
            "k562": 0.0,
            "sknsh": 0.0,
        }
    )
    path = tmp_path / "data.csv"
    frame.to_csv(path, index=False)
    cfg = {"val_fraction": 0.1, "seed": 7}
    oracle_data = EnhancerDataModule(path=str(path), half="first", **cfg)
    oracle_data.setup()
    halves = configured_halves(load_enhancers(path), cfg)
    assert halves.by == "random"
    assert decode(oracle_data.splits["train"].tokens) == halves.first["seq"].tolist()
    assert halves.first["seq"].tolist() != split_halves(frame).first["seq"].tolist()
