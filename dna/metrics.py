"""Sequence-set metrics of the enhancer-design benchmark (computed over e.g. 640 samples).

- naturalness: Pearson correlation of 3-mer frequencies and Spearman correlation of JASPAR
  motif-hit counts, each against the top-0.1% most active real sequences;
- diversity: mean pairwise Hamming distance and the share of distinct k-mers;
- repeats: the most copies of one k-mer within each sequence (also a reward term);
- plus small helpers for the oracle-based metrics (median activity, ATAC-Acc).

Inputs are token tensors ``(num, length)`` with values ``0..3`` (A, C, G, T) unless stated.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from scipy import stats
from torch import Tensor

from dna.sequences import VOCAB_SIZE, decode
from gempo.errors import GempoError


def _check_tokens(tokens: Tensor, k: int = 1) -> None:
    if tokens.dim() != 2:
        raise GempoError(f"expected tokens of shape (num, length), got {tuple(tokens.shape)}")
    if tokens.shape[1] < k:
        raise GempoError(f"sequences of length {tokens.shape[1]} have no {k}-mers")


def kmer_index(tokens: Tensor, k: int, reverse_complement: bool = False) -> Tensor:
    """The k-mer starting at each position, as its index ``(num, length - k + 1)`` on the
    tokens' device: the base-4 number of its tokens, first token most significant (``AAA`` =
    0, ``AAC`` = 1, ..., ``TTT`` = 63 for ``k = 3``); with ``reverse_complement``, the index
    of the k-mer's reverse complement (the same site read on the other strand)."""
    _check_tokens(tokens, k)
    windows = tokens.long().unfold(1, k, 1)  # (num, positions, k)
    if reverse_complement:
        windows = (VOCAB_SIZE - 1 - windows).flip(-1)  # A<->T, C<->G, reversed
    powers = VOCAB_SIZE ** torch.arange(k - 1, -1, -1, device=tokens.device)
    return (windows * powers).sum(-1)


def kmer_counts(tokens: Tensor, k: int = 3) -> np.ndarray:
    """Occurrences of each of the ``4**k`` k-mers over all sequences and positions: ``(4**k,)``,
    in :func:`kmer_index` order."""
    index = kmer_index(tokens, k).flatten()
    return torch.bincount(index, minlength=VOCAB_SIZE**k).cpu().numpy()


def max_kmer_copies(tokens: Tensor, k: int = 8) -> Tensor:
    """Per sequence, the most occurrences of any one k-mer, a k-mer and its reverse complement
    counted together: ``LongTensor (num,)`` on the tokens' device. A sequence that repeats one
    motif scores high (a site planted 6 times: at least 6); natural 200 bp sequences rarely
    hold an 8-mer more than 3 times."""
    canonical = torch.minimum(kmer_index(tokens, k), kmer_index(tokens, k, reverse_complement=True))
    ordered = canonical.sort(dim=1).values
    # the longest run of equal values in each sorted row
    same = (ordered[:, 1:] == ordered[:, :-1]).long()
    run = torch.zeros(len(ordered), dtype=torch.long, device=tokens.device)
    best = torch.ones_like(run)
    for column in same.T:
        run = (run + 1) * column
        best = torch.maximum(best, run + 1)
    return best


def kmer_pearson(generated: Tensor, reference: Tensor, k: int = 3) -> float:
    """Pearson correlation between the k-mer frequency vectors of two sequence sets (the
    benchmark's 3-mer correlation with ``k = 3``); nan when either vector is constant."""
    return count_pearson(kmer_counts(generated, k), kmer_counts(reference, k))


def count_pearson(counts: np.ndarray, reference_counts: np.ndarray) -> float:
    """Pearson correlation between two count vectors ``(num_kmers,)`` as frequencies (what
    :func:`kmer_pearson` computes, for a reference whose counts are already known); nan when
    either vector is constant."""
    a, b = counts.astype(np.float64), reference_counts.astype(np.float64)
    if a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a / a.sum(), b / b.sum())[0, 1])


def motif_totals(tokens: Tensor, motifs: Sequence[str] | None = None) -> np.ndarray:
    """Hits of each JASPAR motif summed over the sequences: ``(num_motifs,)``.

    ``motifs``: JASPAR IDs or names (default: the simulator grammar's factors); hits as counted by
    :func:`dna.simulator.motif_counts` (either strand).
    """
    from dna.simulator import motif_counts

    _check_tokens(tokens)
    return motif_counts(decode(tokens), motifs).to_numpy().sum(axis=0)


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman correlation of two vectors (nan when either is constant)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise GempoError(f"rank_correlation: shapes {a.shape} and {b.shape} differ")
    if len(a) < 2 or a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(stats.spearmanr(a, b).statistic)


def mean_pairwise_hamming(tokens: Tensor) -> float:
    """Mean Hamming distance over all pairs ``i < j``, as a fraction of the length (0 for
    identical sequences, 0.75 expected for uniform random ones); nan for fewer than 2."""
    _check_tokens(tokens)
    num, length = tokens.shape
    if num < 2:
        return float("nan")
    hot = torch.nn.functional.one_hot(tokens.long(), VOCAB_SIZE).flatten(1).double()
    same = hot @ hot.T  # (num, num): matching positions
    off_diagonal = same.sum() - same.diagonal().sum()
    mean_same = off_diagonal / (num * (num - 1))
    return float(1.0 - mean_same / length)


def distinct_kmer_share(tokens: Tensor, k: int = 10) -> float:
    """Distinct k-mers over all k-mer occurrences in the set: near 1 for diverse long k-mers,
    ``1 / num`` when every sequence is the same."""
    _check_tokens(tokens, k)
    windows = tokens.long().unfold(1, k, 1).reshape(-1, k)
    distinct = torch.unique(windows, dim=0).shape[0]
    return distinct / windows.shape[0]


def unique_sequence_share(tokens: Tensor) -> float:
    """Share of distinct sequences in the set."""
    _check_tokens(tokens)
    return torch.unique(tokens, dim=0).shape[0] / max(tokens.shape[0], 1)


def median(values: Tensor | np.ndarray) -> float:
    """The median of a 1-D set of values (the mean of the two middle ones for an even count,
    as numpy does; torch's ``median`` returns the lower one)."""
    array = values.detach().cpu().numpy() if isinstance(values, Tensor) else np.asarray(values)
    return float(np.median(array)) if array.size else float("nan")


def share_percent(flags: Tensor | np.ndarray) -> float:
    """Percentage of true entries (ATAC-Acc from the classifier's accessible calls)."""
    array = flags.detach().cpu().numpy() if isinstance(flags, Tensor) else np.asarray(flags)
    return float(100.0 * array.astype(bool).mean()) if array.size else float("nan")
