"""The simulated MPRA: determinism, the motif grammar's effects, shapes, ranges and speed."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from dna import simulator as sim
from dna.data import split_by_chromosome
from dna.sequences import SEQ_LEN, decode, encode


def plant(seqs: list[str], motifs: list[str], rng: np.random.Generator) -> list[str]:
    """Write the consensus of each motif at spread-out positions of every sequence."""
    out = []
    for seq in seqs:
        chars = list(seq)
        for k, name in enumerate(motifs):
            _, probs = sim.jaspar_probabilities(name)
            site = "".join("ACGT"[i] for i in probs.argmax(0))
            start = 10 + k * 30 + int(rng.integers(0, 8))
            chars[start : start + len(site)] = site
        out.append("".join(chars))
    return out


def shuffled(seqs: list[str], rng: np.random.Generator) -> list[str]:
    return ["".join(rng.permutation(list(s))) for s in seqs]


def test_deterministic_per_seed():
    a, b = sim.simulate_mpra(50, seed=7), sim.simulate_mpra(50, seed=7)
    assert a.equals(b)
    c = sim.simulate_mpra(50, seed=8)
    assert not a["seq"].equals(c["seq"])


def test_shapes_ranges_and_format():
    frame = sim.simulate_mpra(300, seed=0)
    assert list(frame.columns) == ["seq", "hepg2", "k562", "sknsh", "chrom", "accessible"]
    assert frame["seq"].str.len().eq(SEQ_LEN).all()
    assert frame["seq"].str.fullmatch("[ACGT]+").all()
    truth = sim.true_activity(frame["seq"].tolist())
    assert truth.shape == (300, 3) and truth.dtype == np.float64
    assert truth.min() > sim.ACTIVITY_MIN and truth.max() < sim.ACTIVITY_MAX
    measured = frame[list(sim.CELL_TYPES)].to_numpy()
    residual = measured - truth
    assert abs(residual.std() - sim.NOISE_SD) < 0.05  # measurement noise at the documented scale
    assert set(frame["accessible"]) <= {0, 1}
    access = sim.true_accessibility(frame["seq"].tolist())
    assert access.shape == (300,) and ((access > 0) & (access < 1)).all()
    assert set(frame["chrom"]) <= set(sim.CHROMOSOME_WEIGHTS)
    split = split_by_chromosome(frame)
    assert min(len(split.first), len(split.second), len(split.validation)) > 0


def test_sequences_and_measurements_unchanged_since_version_1():
    """Version 2 changed the chromosome labels only: the shipped generator was pretrained on
    these very sequences (hashes taken from version 1)."""
    frame = sim.simulate_mpra(200, seed=0)
    seqs = hashlib.sha256("".join(frame["seq"]).encode()).hexdigest()
    values = frame[["hepg2", "k562", "sknsh", "accessible"]].to_csv(index=False).encode()
    assert seqs == "132b145eb684e72e63c41754e59cb070dcd25b50cdbad218f4be628b9074d1a4"
    assert (
        hashlib.sha256(values).hexdigest()
        == "21f0a165e29d1c3a4245ae8d69ce7cd53d545c361f0c14aa25baa3c06cd3c46f"
    )


def test_chromosome_halves_are_a_distribution_shift():
    """GC-rich backgrounds sit on GC-rich chromosomes and programs cluster by chromosome, so
    chr1-11 and chr12-22 differ in composition and motif usage (they were i.i.d. in version 1)."""
    frame = sim.simulate_mpra(4000, seed=3)
    gc = frame["seq"].map(lambda s: (s.count("G") + s.count("C")) / len(s))
    rich = frame["chrom"].map(sim.CHROMOSOME_GC) >= 44.0
    assert gc[rich].mean() - gc[~rich].mean() > 0.02
    _, tilt, program = sim._simulate(4000, 3, SEQ_LEN)
    probs = sim.chromosome_probabilities(tilt, program)
    assert probs.shape == (4000, len(sim.CHROMOSOME_WEIGHTS))
    assert np.allclose(probs.sum(1), 1.0)
    split = split_by_chromosome(frame.assign(gc=gc, k562=program == sim.PROGRAMS.index("k562")))
    assert split.second["gc"].mean() - split.first["gc"].mean() > 0.02
    # the programs' shares differ between the halves
    assert abs(split.first["k562"].mean() - split.second["k562"].mean()) > 0.03


def test_realistic_background():
    rng = np.random.default_rng(0)
    tokens = sim.background_sequences(400, SEQ_LEN, rng)
    gc = np.isin(tokens, [1, 2]).mean()
    assert 0.36 < gc < 0.46  # human genome: ~41% GC
    pairs = tokens[:, :-1] * 4 + tokens[:, 1:]
    cpg = (pairs == 1 * 4 + 2).mean()
    gpc = (pairs == 2 * 4 + 1).mean()
    assert cpg < 0.4 * gpc  # CpG depleted, as in the genome


def test_planted_hepg2_motifs_raise_hepg2_activity():
    rng = np.random.default_rng(1)
    background = decode(sim.background_sequences(64, SEQ_LEN, rng))
    planted = plant(background, ["HNF1A", "HNF4A", "FOXA2", "CEBPA"], rng)
    act_planted = sim.true_activity(planted)
    act_shuffled = sim.true_activity(shuffled(planted, rng))
    assert act_planted[:, 0].mean() > act_shuffled[:, 0].mean() + 2.0
    assert (act_planted[:, 0] > act_shuffled[:, 0]).mean() > 0.9
    # cell-type specificity: the liver factors move HepG2 much more than K562 or SK-N-SH
    gain = act_planted.mean(0) - sim.true_activity(background).mean(0)
    assert gain[0] > 2.0 and gain[0] > 3 * max(gain[1], gain[2])


def test_k562_motifs_and_repressor():
    rng = np.random.default_rng(2)
    background = decode(sim.background_sequences(64, SEQ_LEN, rng))
    k562 = plant(background, ["GATA1", "TAL1", "KLF1", "NFE2"], rng)
    gain = sim.true_activity(k562).mean(0) - sim.true_activity(background).mean(0)
    assert gain[1] > 1.0 and gain[1] > 2 * max(gain[0], gain[2])
    hepg2 = plant(background, ["HNF1A", "HNF4A"], rng)
    repressed = [s[:150] + plant([s[150:]], ["REST"], rng)[0][: SEQ_LEN - 150] for s in hepg2]
    assert sim.true_activity(repressed)[:, 0].mean() < sim.true_activity(hepg2)[:, 0].mean()


def test_gc_penalty():
    at_rich = ["AT" * 100]
    gc_rich = ["GC" * 100]
    mid = decode(sim.background_sequences(32, SEQ_LEN, np.random.default_rng(3)))
    base = sim.true_activity(mid)[:, 0].mean()
    assert sim.true_activity(gc_rich)[0, 0] < base and sim.true_activity(at_rich)[0, 0] < base


def test_motif_counts_finds_planted_sites():
    rng = np.random.default_rng(4)
    background = decode(sim.background_sequences(16, SEQ_LEN, rng))
    planted = plant(background, ["HNF4A", "GATA1"], rng)
    counts = sim.motif_counts(planted)
    assert counts.shape == (16, len(sim.MOTIF_NAMES))
    assert (counts["HNF4A"] >= 1).all() and (counts["GATA1"] >= 1).all()
    assert counts["HNF4A"].sum() > sim.motif_counts(background)["HNF4A"].sum()
    custom = sim.motif_counts(encode(planted), motifs=["MA0114.5", "CTCF"])
    assert list(custom.columns) == ["HNF4A", "CTCF"]
    assert custom["HNF4A"].tolist() == counts["HNF4A"].tolist()


def test_tokens_and_strings_agree():
    seqs = sim.simulate_sequences(640, seed=5)
    assert np.allclose(sim.true_activity(seqs), sim.true_activity(encode(seqs)))


def test_reverse_strand_sites_are_bound():
    rng = np.random.default_rng(6)
    background = decode(sim.background_sequences(16, SEQ_LEN, rng))
    forward = plant(background, ["HNF1A", "HNF4A"], rng)
    from dna.sequences import reverse_complement

    reverse = [reverse_complement(s) for s in forward]
    act_f, act_r = sim.true_activity(forward)[:, 0], sim.true_activity(reverse)[:, 0]
    act_bg = sim.true_activity(background)[:, 0]
    assert (act_r > act_bg).mean() > 0.9 and np.corrcoef(act_f, act_r)[0, 1] > 0.5


def test_unknown_motif_is_a_clear_error():
    with pytest.raises(ValueError, match="not found in JASPAR"):
        sim.motif_counts(["ACGT" * 50], motifs=["NOT_A_FACTOR"])
