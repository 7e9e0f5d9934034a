"""Per-sequence views: k-mer profiles, PCA, pairwise distances, motif hits with positions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dna.analysis import (
    hits_per_sequence,
    kmer_labels,
    kmer_profiles,
    motif_hits,
    pairwise_hamming,
    pca_embedding,
)
from dna.metrics import kmer_counts, mean_pairwise_hamming
from dna.sequences import encode
from dna.simulator import jaspar_probabilities, motif_counts
from gempo.errors import GempoError


def consensus(motif: str) -> str:
    return "".join("ACGT"[i] for i in jaspar_probabilities(motif)[1].argmax(0))


def test_kmer_profiles_are_per_sequence_frequencies_in_the_pooled_order():
    tokens = torch.randint(0, 4, (5, 30), generator=torch.Generator().manual_seed(0))
    profiles = kmer_profiles(tokens, 3)
    assert profiles.shape == (5, 64) and np.allclose(profiles.sum(1), 1.0)
    pooled = kmer_counts(tokens, 3)
    assert np.allclose(profiles.sum(0) * 28, pooled)
    assert kmer_labels(3)[:2] == ["AAA", "AAC"] and kmer_labels(3)[-1] == "TTT"
    assert kmer_profiles(encode(["ACGA"]), 2)[0, kmer_labels(2).index("CG")] == pytest.approx(1 / 3)


def test_pca_finds_the_direction_of_largest_variance():
    rng = np.random.default_rng(0)
    x = np.c_[rng.normal(0, 5, 200), rng.normal(0, 0.1, 200), np.zeros(200)]
    emb = pca_embedding(x, dims=2)
    assert emb.coords.shape == (200, 2) and emb.explained[0] > 0.99
    assert np.allclose(np.abs(emb.axes[0]), [1, 0, 0], atol=1e-2)
    assert np.allclose((x - emb.mean) @ emb.axes.T, emb.coords)
    with pytest.raises(GempoError):
        pca_embedding(x[:1])


def test_pairwise_hamming_matches_the_mean_metric():
    tokens = torch.randint(0, 4, (6, 40), generator=torch.Generator().manual_seed(1))
    dist = pairwise_hamming(tokens)
    assert dist.shape == (6, 6) and np.allclose(np.diag(dist), 0) and np.allclose(dist, dist.T)
    assert dist[np.triu_indices(6, 1)].mean() == pytest.approx(mean_pairwise_hamming(tokens))


def test_motif_hits_have_positions_and_add_up_to_the_counts():
    site = consensus("GATA1")
    background = "AT" * 50
    seqs = [background[:30] + site + background[30 + len(site) :], background]
    hits = motif_hits(seqs)
    gata = hits[(hits["motif"] == "GATA1") & (hits["sequence"] == 0)]
    assert len(gata) >= 1
    assert (abs(gata["position"] - (30 + len(site) // 2)) <= 1).any()
    planted = gata[(gata["start"] == 30) & (gata["strand"] == "+")]
    assert len(planted) == 1 and planted["length"].item() == len(site)
    counts = motif_counts(seqs)
    per_pair = hits.groupby(["sequence", "motif"]).size()
    for (seq, motif), n in per_pair.items():
        assert counts.loc[seq, motif] == n
    assert counts.to_numpy().sum() == len(hits)

    table = hits_per_sequence({"with": seqs[:1], "without": seqs[1:]})
    assert table.loc["GATA1", "with"] >= 1 and table.loc["GATA1", "without"] == 0
    with pytest.raises(GempoError, match="no sequences"):
        hits_per_sequence({"empty": []})
