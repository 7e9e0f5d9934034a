"""Benchmark metrics against values computed by hand on small fixed inputs."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
import torch

from dna import metrics
from dna.sequences import encode, reverse_complement
from gempo.errors import GempoError


def test_kmer_counts_index_kmers_in_base_four() -> None:
    counts = metrics.kmer_counts(encode(["ACGTA"]), k=2)
    # AC = 0*4+1 = 1, CG = 1*4+2 = 6, GT = 2*4+3 = 11, TA = 3*4+0 = 12
    expected = np.zeros(16, dtype=np.int64)
    expected[[1, 6, 11, 12]] = 1
    np.testing.assert_array_equal(counts, expected)
    # AAAA: AAA x2; AAAT: AAA, AAT (= 3)
    assert metrics.kmer_counts(encode(["AAAA", "AAAT"]), k=3).tolist()[:4] == [3, 0, 0, 1]


def test_kmer_pearson_matches_hand_computation() -> None:
    generated = encode(["AAAA"])  # 2-mers: AA x3
    reference = encode(["AAAC", "AAAA"])  # AA x5, AC x1
    a = np.zeros(16)
    a[0] = 3
    b = np.zeros(16)
    b[0], b[1] = 5, 1
    expected = np.corrcoef(a / a.sum(), b / b.sum())[0, 1]
    assert metrics.kmer_pearson(generated, reference, k=2) == pytest.approx(expected)
    assert metrics.kmer_pearson(reference, reference, k=3) == pytest.approx(1.0)


def test_mean_pairwise_hamming_by_hand() -> None:
    tokens = encode(["AAAA", "AAAT", "TTTT"])
    # pairs: 1, 4, 3 mismatches -> mean 8/3 of 4 positions
    assert metrics.mean_pairwise_hamming(tokens) == pytest.approx(2.0 / 3.0)
    assert metrics.mean_pairwise_hamming(encode(["ACGT", "ACGT"])) == 0.0
    assert math.isnan(metrics.mean_pairwise_hamming(encode(["ACGT"])))


def test_distinct_kmer_and_sequence_shares() -> None:
    assert metrics.distinct_kmer_share(encode(["AAAA", "AAAA"]), k=2) == pytest.approx(1 / 6)
    # ACGT has AC, CG, GT; TTTT has TT x3: 4 distinct of 6
    assert metrics.distinct_kmer_share(encode(["ACGT", "TTTT"]), k=2) == pytest.approx(4 / 6)
    assert metrics.unique_sequence_share(encode(["ACGT", "ACGT", "TTTT", "GGGG"])) == 0.75


def test_rank_correlation_median_and_share() -> None:
    assert metrics.rank_correlation(np.array([1, 2, 3]), np.array([30, 20, 10])) == -1.0
    assert metrics.rank_correlation(
        np.array([1, 2, 3, 4]), np.array([1, 3, 2, 4])
    ) == pytest.approx(0.8)
    assert math.isnan(metrics.rank_correlation(np.array([1, 1, 1]), np.array([1, 2, 3])))
    assert metrics.median(torch.tensor([4.0, 1.0, 3.0, 2.0])) == 2.5  # numpy's median
    assert metrics.share_percent(torch.tensor([True, False, False, True])) == 50.0


def test_motif_totals_count_a_planted_consensus() -> None:
    from dna.simulator import motif_counts

    rng = np.random.default_rng(0)
    seqs = ["".join(rng.choice(list("ACGT"), 60)) for _ in range(4)]
    totals = metrics.motif_totals(encode(seqs))
    np.testing.assert_array_equal(totals, motif_counts(seqs).to_numpy().sum(axis=0))


def test_bad_shapes_raise_clear_errors() -> None:
    with pytest.raises(GempoError, match="shape"):
        metrics.kmer_counts(torch.zeros(5, dtype=torch.long))
    with pytest.raises(GempoError, match="no 3-mers"):
        metrics.kmer_counts(encode(["AC"]), k=3)


def test_max_kmer_copies_counts_a_kmer_with_its_reverse_complement() -> None:
    rng = np.random.default_rng(0)
    seqs = ["".join(rng.choice(list("ACGT"), 60)) for _ in range(20)]
    fill = ["".join(rng.choice(list("ACGT"), 6)) for _ in range(3)] + [
        "".join(rng.choice(list("ACGT"), 18))
    ]
    seqs.append(fill[0] + "TGTAAACA" + fill[1] + "TGTTTACA" + fill[2] + "TGTAAACA" + fill[3])
    seqs.append("".join(rng.choice(list("ACGT"), 4)) * 15)  # a period-4 repeat

    def brute(seq: str, k: int) -> int:
        def canonical(word: str) -> str:
            return min(word, reverse_complement(word))

        counts = Counter(canonical(seq[i : i + k]) for i in range(len(seq) - k + 1))
        return max(counts.values())

    got = metrics.max_kmer_copies(encode(seqs), 8).numpy()
    assert got.tolist() == [brute(s, 8) for s in seqs]
    assert got[-2] == 3 and got[-1] >= 13
    assert metrics.max_kmer_copies(encode(seqs), 3).tolist() == [brute(s, 3) for s in seqs]
