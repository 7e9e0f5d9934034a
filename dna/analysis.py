"""Per-sequence views of sequence sets, for exploring what a generator produces (the
``notebooks/explore_sequences.ipynb`` figures):

- k-mer frequency profiles per sequence and a 2-D embedding of them (PCA by SVD);
- pairwise Hamming distances;
- JASPAR motif hits with their positions and strands, and hits per sequence of several sets.

:mod:`dna.metrics` holds the set-level benchmark numbers; this module keeps the per-sequence
detail behind them. Token inputs are ``(num, length)`` with values ``0..3`` (A, C, G, T).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from dna.metrics import kmer_index
from dna.sequences import ALPHABET, VOCAB_SIZE, encode
from dna.simulator import MotifScanner, grammar_scanner, motif_counts
from gempo.errors import GempoError


def _check_tokens(tokens: Tensor, k: int = 1) -> None:
    if tokens.dim() != 2 or tokens.shape[1] < k:
        raise GempoError(
            f"expected tokens of shape (num, length >= {k}), got {tuple(tokens.shape)}"
        )


def kmer_labels(k: int = 3) -> list[str]:
    """The ``4**k`` k-mers in profile order (``AAA``, ``AAC``, ..., ``TTT`` for ``k = 3``)."""
    return ["".join(p) for p in itertools.product(ALPHABET, repeat=k)]


def kmer_profiles(tokens: Tensor, k: int = 3) -> np.ndarray:
    """Frequency of each k-mer within each sequence: ``(num, 4**k)``, rows summing to 1.

    Same k-mer order as :func:`kmer_labels` and :func:`dna.metrics.kmer_counts` (which pools
    the counts over the whole set).
    """
    index = kmer_index(tokens.cpu(), k)  # (num, positions)
    counts = torch.zeros(tokens.shape[0], VOCAB_SIZE**k, dtype=torch.float64)
    counts.scatter_add_(1, index, torch.ones_like(index, dtype=torch.float64))
    return (counts / index.shape[1]).numpy()


class Embedding(NamedTuple):
    """A linear embedding of feature rows.

    ``coords``: ``(num, dims)`` projections of the centred rows; ``explained``: ``(dims,)``
    share of the total variance along each axis; ``mean`` ``(features,)`` and ``axes``
    ``(dims, features)`` project further rows with ``(x - mean) @ axes.T``.
    """

    coords: np.ndarray
    explained: np.ndarray
    mean: np.ndarray
    axes: np.ndarray


def pca_embedding(features: np.ndarray, dims: int = 2) -> Embedding:
    """Principal components of ``features`` ``(num, features)`` by a thin SVD of the centred
    matrix (no scaling); the sign of each axis is fixed so its largest loading is positive."""
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2 or not 1 <= dims <= min(x.shape):
        raise GempoError(
            f"pca_embedding: need (num >= 2, features) rows and 1 <= dims <= "
            f"min(shape), got shape {x.shape} and dims={dims}"
        )
    mean = x.mean(axis=0)
    _, singular, vt = np.linalg.svd(x - mean, full_matrices=False)
    axes = vt[:dims]
    signs = np.sign(axes[np.arange(dims), np.abs(axes).argmax(axis=1)])
    axes = axes * signs[:, None]
    variance = singular**2
    total = variance.sum()
    explained = variance[:dims] / total if total > 0 else np.zeros(dims)
    return Embedding((x - mean) @ axes.T, explained, mean, axes)


def pairwise_hamming(tokens: Tensor) -> np.ndarray:
    """Hamming distances ``(num, num)`` between all sequences, as a fraction of the length."""
    _check_tokens(tokens)
    hot = torch.nn.functional.one_hot(tokens.long().cpu(), VOCAB_SIZE).flatten(1).double()
    same = hot @ hot.T
    return (1.0 - same / tokens.shape[1]).numpy()


def _scanner(motifs: Sequence[str] | None) -> MotifScanner:
    return grammar_scanner() if motifs is None else MotifScanner(list(motifs))


def motif_hits(seqs: Sequence[str] | Tensor, motifs: Sequence[str] | None = None) -> pd.DataFrame:
    """Every PWM hit of the motifs in the sequences, one row each: ``sequence`` (index in
    ``seqs``), ``motif``, ``strand`` (``+``/``-``), ``position`` (the site's centre, 0-based),
    ``start`` and ``length`` (the site is ``seq[start:start + length]``, read on the forward
    strand; reverse-complement it for ``-`` hits) and ``score`` (log-odds, nats).

    Hits are the sites :func:`dna.simulator.motif_counts` counts (same scanner and threshold),
    so the rows per ``(sequence, motif)`` add up to its counts. ``motifs``: JASPAR IDs or names,
    default the simulator grammar's factors.
    """
    tokens = seqs.long().cpu() if isinstance(seqs, Tensor) else encode(list(seqs))
    _check_tokens(tokens)
    scanner = _scanner(motifs)
    with torch.no_grad():
        scores = scanner.scores(tokens)  # (num, motifs, 2, length)
    threshold = torch.from_numpy(scanner.threshold.astype(np.float32))
    seq, motif, strand, position = torch.nonzero(
        scores >= threshold[None, :, None, None], as_tuple=True
    )
    names = np.asarray(scanner.names, dtype=object)
    m, centre = motif.numpy(), position.numpy()
    return pd.DataFrame(
        {
            "sequence": seq.numpy(),
            "motif": names[m],
            "strand": np.where(strand.numpy() == 0, "+", "-"),
            "position": centre,
            "start": centre - scanner.width // 2 + scanner.offsets[m],
            "length": scanner.lengths[m],
            "score": scores[seq, motif, strand, position].numpy().astype(np.float64),
        }
    )


def hits_per_sequence(
    sets: Mapping[str, Sequence[str] | Tensor], motifs: Sequence[str] | None = None
) -> pd.DataFrame:
    """Mean motif hits per sequence: one row per motif, one column per named sequence set
    (motifs in the scanner's order)."""
    empty = [name for name, seqs in sets.items() if len(seqs) == 0]
    if empty:
        raise GempoError(f"hits_per_sequence: no sequences in {empty}")
    frame = pd.DataFrame(
        {name: motif_counts(seqs, motifs).mean(axis=0) for name, seqs in sets.items()}
    )
    frame.index.name = "motif"
    return frame
