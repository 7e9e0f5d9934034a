"""Simulated MPRA: a motif grammar on real JASPAR PWMs that is the ground truth of the DNA world.

Activity of a sequence ``x`` in cell type ``c`` (docs/dna_world.md has the full grammar)::

    occupancy  theta_m(i, strand) = sigmoid(2 (s_m(i, strand) - mu_m))    s: PWM log-odds, nats
    site load  O_m = sum_{i, strand} w_pos(i) theta_m(i, strand)           w_pos: 0.8 -> 1.2
    pair term  C_p = sum_{i, j} theta_a(i) K_p(j - i) theta_b(j)           K_p: spacing window
    logit      z_c = b_c + sum_m e_cm log2(1 + O_m) + sum_p g_cp C_p / (1 + C_p)
                     - 12 (GC - 0.45)^2
    activity   y_c = -2 + 12.5 sigmoid(z_c)                                noise-free truth
    measured   y_c + N(0, 0.4^2)

The HepG2 accessibility (ATAC) probability is
``sigmoid(a_0 + sum_m p_m log2(1 + O_m) + 4 (GC - 0.42))``: pioneer factors (FOXA, CEBP, HNF4A,
AP-1) raise it and REST lowers it.
"""

from __future__ import annotations

import functools
import math
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from dna.sequences import ALPHABET, SEQ_LEN, decode, encode, one_hot
from gempo.errors import GempoError

SIMULATOR_VERSION = 2  # names the data file; 2: chromosome labels depend on the sequence
SEQUENCE_STREAM = 1  # keys the random streams of sequences and measurements (unchanged since 1)
CELL_TYPES = ("hepg2", "k562", "sknsh")
BACKGROUND = np.array([0.3, 0.2, 0.2, 0.3])  # genomic base composition (A, C, G, T)
# Human genome dinucleotide frequencies (%), rows = first base, columns = second base (ACGT);
# CpG is depleted about five-fold, as in the genome.
DINUCLEOTIDES = np.array(
    [
        [9.7, 5.0, 7.0, 7.6],
        [7.3, 5.2, 1.0, 7.0],
        [5.9, 4.3, 5.2, 5.0],
        [6.5, 5.9, 7.3, 9.7],
    ]
)
ACTIVITY_MIN, ACTIVITY_MAX = -2.0, 10.5
NOISE_SD = 0.4
GC_OPTIMUM, GC_PENALTY = 0.45, 12.0
THRESHOLD_BELOW_MAX = 3.0  # nats: a site scoring this far below the consensus is half occupied
MIN_THRESHOLD = 6.0  # nats: keeps short motifs from being bound everywhere
OCCUPANCY_SLOPE = 2.0  # per nat: sharpens binding so weak background sites add little
CHUNK = 4096  # sequences per scanning chunk (bounds memory: chunk x motifs x 2 x length floats)


@dataclass(frozen=True)
class Factor:
    """A transcription factor of the grammar: its JASPAR matrix and its effects.

    ``effect``: logit change per doubling of site load in (hepg2, k562, sknsh);
    ``access``: the same on the HepG2 accessibility logit (pioneer activity).
    """

    name: str
    matrix_id: str
    effect: tuple[float, float, float]
    access: float = 0.0


@dataclass(frozen=True)
class Cooperation:
    """Two factors that act together when their centres are ``min_spacing..max_spacing`` bp apart.

    ``same_strand``: only pairs on the same strand count; ``helical``: the pair term is modulated
    by ``(1 + cos(2 pi d / 10.5)) / 2`` (both sites on the same face of the helix).
    """

    first: str
    second: str
    min_spacing: int
    max_spacing: int
    same_strand: bool
    helical: bool
    effect: tuple[float, float, float]


FACTORS: tuple[Factor, ...] = (
    # HepG2 (liver) activators
    Factor("HNF1A", "MA0046.3", (0.55, 0.0, 0.0), 0.3),
    Factor("HNF4A", "MA0114.5", (0.55, 0.0, 0.0), 0.5),
    Factor("FOXA1", "MA0148.5", (0.35, 0.0, 0.05), 1.4),
    Factor("FOXA2", "MA0047.4", (0.35, 0.0, 0.05), 1.4),
    Factor("CEBPA", "MA0102.5", (0.35, 0.05, 0.0), 0.8),
    Factor("CEBPB", "MA0466.4", (0.3, 0.05, 0.0), 0.8),
    Factor("ONECUT1", "MA0679.3", (0.3, 0.0, 0.05), 0.2),
    # K562 (erythroleukemia) activators
    Factor("GATA1", "MA0035.5", (0.0, 0.5, 0.05), 0.3),
    Factor("TAL1", "UN0808.1", (0.0, 0.3, 0.05), 0.0),
    Factor("KLF1", "MA0493.3", (0.05, 0.4, 0.0), 0.1),
    Factor("NFE2", "MA0841.2", (0.0, 0.45, 0.0), 0.2),
    # SK-N-SH (neuroblastoma) activators
    Factor("PHOX2B", "MA0681.3", (0.0, 0.0, 0.55), 0.0),
    Factor("ASCL1", "MA1100.3", (0.0, 0.05, 0.4), 0.0),
    Factor("HAND2", "MA1638.2", (0.0, 0.1, 0.35), 0.0),
    Factor("ISL1", "MA1608.2", (0.0, 0.0, 0.3), 0.0),
    # ubiquitous activator (AP-1)
    Factor("FOS::JUN", "MA0099.4", (0.3, 0.3, 0.3), 0.7),
    # repressors; REST silences neuronal enhancers outside neurons
    Factor("REST", "MA0138.3", (-1.0, -0.8, -0.1), -0.8),
    Factor("SNAI2", "MA0745.3", (-0.4, -0.4, -0.25), 0.0),
    Factor("ZEB1", "MA0103.4", (-0.3, -0.3, -0.3), 0.0),
)

COOPERATIONS: tuple[Cooperation, ...] = (
    Cooperation("HNF1A", "HNF4A", 8, 40, False, True, (0.6, 0.0, 0.0)),
    Cooperation("FOXA2", "HNF4A", 10, 50, False, False, (0.35, 0.0, 0.0)),
    Cooperation("GATA1", "TAL1", 7, 11, True, False, (0.0, 0.6, 0.0)),
    Cooperation("PHOX2B", "HAND2", 5, 25, False, False, (0.0, 0.0, 0.5)),
)

BASELINE = {"hepg2": -1.7, "k562": -1.6, "sknsh": -1.6}
ACCESS_BASELINE = -2.4

MOTIFS_BY_CELL_TYPE: dict[str, tuple[str, ...]] = {
    cell: tuple(
        f.name
        for f in FACTORS
        if f.effect[k] >= 0.25 and all(e < f.effect[k] for j, e in enumerate(f.effect) if j != k)
    )
    for k, cell in enumerate(CELL_TYPES)
}
UBIQUITOUS_MOTIFS: tuple[str, ...] = ("FOS::JUN",)
REPRESSOR_MOTIFS: tuple[str, ...] = tuple(f.name for f in FACTORS if max(f.effect) < 0)
MOTIF_NAMES: tuple[str, ...] = tuple(f.name for f in FACTORS)
GRAMMAR_MATRIX_IDS: dict[str, str] = {f.name.upper(): f.matrix_id for f in FACTORS}

# Chromosomes, weighted by approximate protein-coding gene count (enhancers follow genes).
CHROMOSOME_WEIGHTS = {
    "chr1": 2000, "chr2": 1200, "chr3": 1050, "chr4": 750, "chr5": 880, "chr6": 1000,
    "chr7": 900, "chr8": 680, "chr9": 780, "chr10": 730, "chr11": 1300, "chr12": 1030,
    "chr13": 320, "chr14": 600, "chr15": 600, "chr16": 850, "chr17": 1180, "chr18": 270,
    "chr19": 1470, "chr20": 540, "chr21": 230, "chr22": 440, "chrX": 850,
}  # fmt: skip
# Approximate GC content (%) of each chromosome (GRCh38): GC-rich isochores sit on chr16, 17,
# 19, 20 and 22, so a sequence's GC tilt makes some chromosomes likelier than others.
CHROMOSOME_GC = {
    "chr1": 41.7, "chr2": 40.2, "chr3": 39.7, "chr4": 38.2, "chr5": 39.5, "chr6": 39.6,
    "chr7": 40.7, "chr8": 40.1, "chr9": 41.3, "chr10": 41.6, "chr11": 41.6, "chr12": 40.8,
    "chr13": 38.5, "chr14": 40.9, "chr15": 42.2, "chr16": 44.8, "chr17": 45.5, "chr18": 39.8,
    "chr19": 48.4, "chr20": 44.1, "chr21": 40.9, "chr22": 48.0, "chrX": 39.5,
}  # fmt: skip
GC_TILT_SD = 0.3  # sd of the log GC tilt of a sequence's background
ISOCHORE_COUPLING = 0.8  # log-odds of a chromosome per sd of tilt per sd of chromosome GC
PROGRAM_PREFERENCE_SD = 1.0  # sd of each chromosome's log-preference for each program
PROGRAM_PREFERENCE_SEED = 2024  # the fixed draw of those preferences (part of the world)


@functools.lru_cache(maxsize=256)
def jaspar_probabilities(key: str) -> tuple[str, np.ndarray]:
    """JASPAR motif by matrix ID (``MA0114.5``) or name -> (name, probabilities ``(4, L)``).

    Read offline from the ``pyjaspar`` package's database; cached per process. A grammar factor's
    name resolves to the grammar's matrix; another name with several matrices to the first human
    (taxon 9606) one JASPAR lists.
    """
    from pyjaspar import jaspardb

    db = jaspardb()
    key = GRAMMAR_MATRIX_IDS.get(key.upper(), key)
    if re.fullmatch(r"[A-Z]{2}\d{4}\.\d+", key):
        motif = db.fetch_motif_by_id(key)
    else:
        with warnings.catch_warnings():  # pyjaspar warns on an empty result; we raise instead
            warnings.simplefilter("ignore")
            found = db.fetch_motifs_by_name(key) or []
        human = [m for m in found if "9606" in (getattr(m, "species", None) or [])]
        motif = (human or found or [None])[0]
    if motif is None:
        raise GempoError(f"motif {key!r}: not found in JASPAR ({db.release})")
    counts = np.array([motif.counts[base] for base in ALPHABET], dtype=np.float64)
    pseudo = counts + 0.8 * BACKGROUND[:, None] * counts.sum(0, keepdims=True) ** 0.5
    return motif.name, pseudo / pseudo.sum(0, keepdims=True)


class MotifScanner:
    """Both-strand PWM log-odds scanning by one ``conv1d`` over one-hot sequences.

    Motifs are centred in a kernel of the longest motif's width, so output position ``i`` is a
    motif's centre; positions where a motif would run off the sequence are masked.
    """

    def __init__(self, keys: Sequence[str], names: Sequence[str] | None = None):
        self.keys = tuple(keys)
        loaded = [jaspar_probabilities(k) for k in self.keys]
        self.names = tuple(names) if names is not None else tuple(name for name, _ in loaded)
        probs = [p for _, p in loaded]
        self.lengths = np.array([p.shape[1] for p in probs])
        self.width = int(self.lengths.max())
        log_odds = [np.log(p / BACKGROUND[:, None]) for p in probs]  # nats
        self.max_score = np.array([lo.max(0).sum() for lo in log_odds])
        self.min_score = np.array([lo.min(0).sum() for lo in log_odds])
        self.offsets = (self.width - self.lengths) // 2
        weight = np.zeros((2 * len(probs), 4, self.width), dtype=np.float32)
        for m, lo in enumerate(log_odds):
            start = self.offsets[m]
            weight[2 * m, :, start : start + lo.shape[1]] = lo
            weight[2 * m + 1, :, start : start + lo.shape[1]] = lo[::-1, ::-1]  # reverse complement
        self.weight = torch.from_numpy(weight)
        self.threshold = np.maximum(self.max_score - THRESHOLD_BELOW_MAX, MIN_THRESHOLD)

    def scores(self, tokens: torch.Tensor) -> torch.Tensor:
        """Tokens ``(batch, length)`` -> log-odds ``(batch, motifs, 2, length)`` (nats; strands
        forward and reverse), ``-inf`` where the motif does not fit."""
        x = one_hot(tokens)
        left = self.width // 2
        x = F.pad(x, (left, self.width - 1 - left))
        out = F.conv1d(x, self.weight)
        batch, _, length = out.shape
        out = out.view(batch, len(self.names), 2, length)
        return out + self._mask(length)[None, :, None, :]

    @functools.lru_cache(maxsize=8)  # noqa: B019 - a few lengths per scanner, scanners are cached
    def _mask(self, length: int) -> torch.Tensor:
        """Additive mask ``(motifs, length)``: 0 where the motif fits entirely, -inf elsewhere."""
        centre = np.arange(length)[None, :]
        start = centre - self.width // 2 + self.offsets[:, None]
        fits = (start >= 0) & (start + self.lengths[:, None] <= length)
        return torch.from_numpy(np.where(fits, 0.0, -np.inf).astype(np.float32))

    def occupancy(self, tokens: torch.Tensor) -> torch.Tensor:
        """Occupancy ``sigmoid(slope * (score - threshold))``: ``(batch, motifs, 2, length)``."""
        threshold = torch.from_numpy(self.threshold.astype(np.float32))
        return torch.sigmoid(
            OCCUPANCY_SLOPE * (self.scores(tokens) - threshold[None, :, None, None])
        )

    def counts(self, tokens: torch.Tensor) -> np.ndarray:
        """Number of sites (either strand) scoring above the threshold: ``(batch, motifs)``."""
        threshold = torch.from_numpy(self.threshold.astype(np.float32))
        hits = self.scores(tokens) >= threshold[None, :, None, None]
        return hits.sum(dim=(2, 3)).numpy()


@functools.lru_cache(maxsize=1)
def grammar_scanner() -> MotifScanner:
    """The cached scanner of the grammar's factors (loaded once per process)."""
    return MotifScanner([f.matrix_id for f in FACTORS], names=MOTIF_NAMES)


@functools.lru_cache(maxsize=8)
def _scanner_for(keys: tuple[str, ...]) -> MotifScanner:
    return MotifScanner(keys)


def _as_tokens(seqs: Sequence[str] | torch.Tensor) -> torch.Tensor:
    """Strings or a token tensor ``(batch, length)`` -> LongTensor tokens on the CPU."""
    if isinstance(seqs, torch.Tensor):
        if seqs.dim() != 2:
            raise GempoError(f"expected tokens of shape (batch, length), got {tuple(seqs.shape)}")
        return seqs.detach().long().cpu()
    return encode(seqs)


@dataclass(frozen=True)
class GrammarTerms:
    """Per-sequence features of the grammar, all ``(batch, ...)`` float64 arrays."""

    load: np.ndarray  # (batch, factors): log2(1 + position-weighted site load O_m)
    pairs: np.ndarray  # (batch, cooperations): saturated pair terms C_p / (1 + C_p)
    gc: np.ndarray  # (batch,): GC fraction


def _pair_kernel(pair: Cooperation) -> torch.Tensor:
    """Spacing kernel ``K(d)``, ``d = -max..max``: 1 (or the helical phase) inside the window."""
    d = np.arange(-pair.max_spacing, pair.max_spacing + 1)
    k = ((np.abs(d) >= pair.min_spacing) & (np.abs(d) <= pair.max_spacing)).astype(np.float64)
    if pair.helical:
        k *= 0.5 * (1.0 + np.cos(2.0 * math.pi * d / 10.5))
    return torch.from_numpy(k.astype(np.float32))


def _chunk_terms(tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Site loads ``(batch, factors)`` and pair terms ``(batch, cooperations)`` of one chunk."""
    theta = grammar_scanner().occupancy(tokens)  # (batch, factors, 2, length)
    length = tokens.shape[1]
    position = torch.linspace(0.8, 1.2, length).repeat(2)  # both strands, flattened below
    load = theta.flatten(2) @ position  # (batch, factors)
    index = {f.name: m for m, f in enumerate(FACTORS)}
    pairs = []
    for pair in COOPERATIONS:
        a, b = theta[:, index[pair.first]], theta[:, index[pair.second]]  # (batch, 2, length)
        if not pair.same_strand:
            a, b = a.sum(1, keepdim=True), b.sum(1, keepdim=True)
        kernel = _pair_kernel(pair)
        near_b = F.conv1d(b.reshape(-1, 1, length), kernel[None, None], padding=len(kernel) // 2)
        c = (a * near_b.view_as(b)).sum(dim=(1, 2))
        pairs.append(c / (1.0 + c))
    return load, torch.stack(pairs, 1)


def grammar_terms(seqs: Sequence[str] | torch.Tensor) -> GrammarTerms:
    """Site loads, cooperativity terms and GC content of each sequence (vectorised, chunked)."""
    tokens = _as_tokens(seqs)
    with torch.no_grad():
        parts = [_chunk_terms(tokens[i : i + CHUNK]) for i in range(0, len(tokens), CHUNK)]
        gc = ((tokens == 1) | (tokens == 2)).double().mean(1)
    if not parts:
        raise GempoError("grammar_terms: no sequences given")
    load = torch.cat([p[0] for p in parts])
    pairs = torch.cat([p[1] for p in parts])
    return GrammarTerms(
        load=torch.log2(1.0 + load).double().numpy(),
        pairs=pairs.double().numpy(),
        gc=gc.numpy(),
    )


def activity_logits(terms: GrammarTerms) -> np.ndarray:
    """The grammar's linear predictor ``z`` ``(batch, 3)`` from its terms."""
    effect = np.array([f.effect for f in FACTORS])  # (factors, 3)
    pair_effect = np.array([p.effect for p in COOPERATIONS])  # (pairs, 3)
    baseline = np.array([BASELINE[c] for c in CELL_TYPES])
    gc_term = GC_PENALTY * (terms.gc - GC_OPTIMUM) ** 2
    return baseline + terms.load @ effect + terms.pairs @ pair_effect - gc_term[:, None]


def true_activity(seqs: Sequence[str] | torch.Tensor) -> np.ndarray:
    """Noise-free activity ``(n, 3)`` in (hepg2, k562, sknsh), range ``(-2, 10.5)``.

    ``seqs``: ACGT strings of one length (200 bp for the calibrated scale) or tokens ``(n, L)``.
    """
    z = activity_logits(grammar_terms(seqs))
    return ACTIVITY_MIN + (ACTIVITY_MAX - ACTIVITY_MIN) / (1.0 + np.exp(-z))


def _accessibility_from_terms(terms: GrammarTerms) -> np.ndarray:
    access = np.array([f.access for f in FACTORS])
    logit = ACCESS_BASELINE + terms.load @ access + 4.0 * (terms.gc - 0.42)
    return 1.0 / (1.0 + np.exp(-logit))


def true_accessibility(seqs: Sequence[str] | torch.Tensor) -> np.ndarray:
    """Probability ``(n,)`` that each sequence is accessible (an ATAC peak) in HepG2."""
    return _accessibility_from_terms(grammar_terms(seqs))


def is_accessible(seqs: Sequence[str] | torch.Tensor) -> np.ndarray:
    """Boolean ``(n,)``: the simulator's accessibility probability is at least 0.5."""
    return true_accessibility(seqs) >= 0.5


def motif_counts(
    seqs: Sequence[str] | torch.Tensor, motifs: Sequence[str] | None = None
) -> pd.DataFrame:
    """Count PWM hits (either strand) per sequence: DataFrame ``(n, num_motifs)``.

    ``motifs``: JASPAR matrix IDs or names (read offline from pyjaspar); default the grammar's
    factors. A hit scores at least ``max(consensus - 3 nats, 5 nats)`` in log-odds.
    """
    scanner = grammar_scanner() if motifs is None else _scanner_for(tuple(motifs))
    with torch.no_grad():
        counts = scanner.counts(_as_tokens(seqs))
    return pd.DataFrame(counts.astype(np.int64), columns=list(scanner.names))


def gc_tilts(num_sequences: int, rng: np.random.Generator) -> np.ndarray:
    """Per-sequence GC tilt ``(n,)``: the factor on C and G of the background chain, log-normal
    with sd ``GC_TILT_SD`` (isochore-like variation)."""
    return np.exp(rng.normal(0.0, GC_TILT_SD, size=num_sequences))


def background_sequences(
    num_sequences: int, length: int, rng: np.random.Generator, tilt: np.ndarray | None = None
) -> np.ndarray:
    """Genomic-like background tokens ``(n, length)``: a first-order Markov chain with human
    dinucleotide frequencies, GC content tilted per sequence by ``tilt`` ``(n,)`` (default: drawn
    by :func:`gc_tilts` from ``rng``)."""
    transition = DINUCLEOTIDES / DINUCLEOTIDES.sum(1, keepdims=True)
    tilt = gc_tilts(num_sequences, rng) if tilt is None else tilt
    scale = np.ones((num_sequences, 1, 4))
    scale[:, 0, 1:3] = tilt[:, None]
    probs = transition[None] * scale  # (n, 4, 4)
    cumulative = np.cumsum(probs / probs.sum(2, keepdims=True), axis=2)
    tokens = np.empty((num_sequences, length), dtype=np.int8)
    tokens[:, 0] = rng.choice(4, size=num_sequences, p=BACKGROUND)
    uniform = rng.random((num_sequences, length))
    rows = np.arange(num_sequences)
    for pos in range(1, length):  # a Markov chain is sequential in position; vectorised over n
        cdf = cumulative[rows, tokens[:, pos - 1]]
        tokens[:, pos] = np.minimum((uniform[:, pos, None] > cdf).sum(1), 3)
    return tokens


@dataclass(frozen=True)
class PlantingPlan:
    """Which factor is planted where: ``(n, slots)`` arrays, ``motif == -1`` for an empty slot;
    ``program`` ``(n,)``: each sequence's regulatory program (an index into ``PROGRAMS``)."""

    motif: np.ndarray
    start: np.ndarray
    reverse: np.ndarray
    program: np.ndarray


PROGRAMS = ("background", "hepg2", "k562", "sknsh", "mixed")
PROGRAM_PROBS = (0.3, 0.25, 0.15, 0.15, 0.15)
MAX_SITES = 6


def _plan_sites(num_sequences: int, length: int, rng: np.random.Generator) -> PlantingPlan:
    """Draw a regulatory program per sequence and the factor sites it plants."""
    index = {f.name: m for m, f in enumerate(FACTORS)}
    lengths = grammar_scanner().lengths
    program = rng.choice(len(PROGRAMS), size=num_sequences, p=PROGRAM_PROBS)
    n_sites = 1 + rng.binomial(MAX_SITES - 1, 0.3, size=num_sequences)
    n_sites[program == 0] = 0
    slots = MAX_SITES + 1  # the last slot holds an optional repressor
    motif = np.full((num_sequences, slots), -1, dtype=np.int64)
    for p, name in enumerate(PROGRAMS[1:], start=1):
        if name == "mixed":
            pool = np.arange(len(FACTORS))
        else:
            pool = np.array([index[m] for m in MOTIFS_BY_CELL_TYPE[name] + UBIQUITOUS_MOTIFS])
        rows = np.flatnonzero(program == p)
        motif[rows, :MAX_SITES] = rng.choice(pool, size=(len(rows), MAX_SITES))
    motif[:, :MAX_SITES][np.arange(MAX_SITES)[None, :] >= n_sites[:, None]] = -1
    repressed = rng.random(num_sequences) < 0.1
    motif[repressed, MAX_SITES] = rng.choice([index[r] for r in REPRESSOR_MOTIFS], repressed.sum())
    reverse = rng.random((num_sequences, slots)) < 0.5
    room = length - lengths[np.maximum(motif, 0)]
    start = (rng.random((num_sequences, slots)) * (room + 1)).astype(np.int64)
    _plant_cooperative_pairs(program, n_sites, motif, start, reverse, rng, length)
    return PlantingPlan(motif=motif, start=start, reverse=reverse, program=program)


def _plant_cooperative_pairs(
    program: np.ndarray,
    n_sites: np.ndarray,
    motif: np.ndarray,
    start: np.ndarray,
    reverse: np.ndarray,
    rng: np.random.Generator,
    length: int,
) -> None:
    """Turn slots 0 and 1 into a cooperating pair at a preferred spacing for 40% of the
    sequences of a cell-type program that plant at least two sites (in place)."""
    index = {f.name: m for m, f in enumerate(FACTORS)}
    lengths = grammar_scanner().lengths
    for pair in COOPERATIONS:
        cell = CELL_TYPES[int(np.argmax(pair.effect))]
        rows = np.flatnonzero((program == PROGRAMS.index(cell)) & (n_sites >= 2))
        rows = rows[rng.random(len(rows)) < 0.4 / _pairs_per_cell(cell)]
        a, b = index[pair.first], index[pair.second]
        la, lb = lengths[a], lengths[b]
        spacing = rng.integers(pair.min_spacing, pair.max_spacing + 1, size=len(rows))
        if pair.helical:  # choose spacings on the same face of the helix
            spacing = np.round(np.maximum(spacing / 10.5, 1.0)) * 10.5
            spacing = np.minimum(spacing.astype(np.int64), pair.max_spacing)
        centre_a = rng.integers(la // 2, length - lb - spacing + la // 2, size=len(rows))
        motif[rows, 0], motif[rows, 1] = a, b
        start[rows, 0] = centre_a - la // 2
        start[rows, 1] = centre_a + spacing - lb // 2
        same = rng.random(len(rows)) < 0.5 if not pair.same_strand else np.zeros(len(rows), bool)
        reverse[rows, 0] = same
        reverse[rows, 1] = same if pair.same_strand else rng.random(len(rows)) < 0.5
    np.clip(start, 0, None, out=start)


@functools.lru_cache(maxsize=4)
def _pairs_per_cell(cell: str) -> int:
    return sum(CELL_TYPES[int(np.argmax(p.effect))] == cell for p in COOPERATIONS)


def _apply_plan(tokens: np.ndarray, plan: PlantingPlan, rng: np.random.Generator) -> None:
    """Write PWM-sampled sites into ``tokens`` (in place), slot by slot (later slots win)."""
    scanner = grammar_scanner()
    probs = [jaspar_probabilities(f.matrix_id)[1] for f in FACTORS]
    length = tokens.shape[1]
    for slot in range(plan.motif.shape[1]):
        for m, p in enumerate(probs):
            rows = np.flatnonzero(plan.motif[:, slot] == m)
            if not len(rows):
                continue
            width = scanner.lengths[m]
            cdf = np.cumsum(p, axis=0)  # (4, width)
            draws = rng.random((len(rows), width))
            site = (draws[:, None, :] > cdf[None]).sum(1).clip(0, 3)  # (rows, width)
            flip = plan.reverse[rows, slot]
            site[flip] = 3 - site[flip, ::-1]
            start = np.minimum(plan.start[rows, slot], length - width)
            cols = start[:, None] + np.arange(width)[None, :]
            tokens[rows[:, None], cols] = site


def _simulate(
    num_sequences: int, seed: int, length: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tokens ``(n, length)`` of background plus planted sites, with each sequence's GC tilt
    ``(n,)`` and program ``(n,)`` (what its chromosome depends on)."""
    rng = np.random.default_rng([seed, SEQUENCE_STREAM])
    tilt = gc_tilts(num_sequences, rng)
    tokens = background_sequences(num_sequences, length, rng, tilt)
    plan = _plan_sites(num_sequences, length, rng)
    _apply_plan(tokens, plan, rng)
    return tokens, tilt, plan.program


def simulate_sequences(num_sequences: int, seed: int, length: int = SEQ_LEN) -> list[str]:
    """Draw ``num_sequences`` enhancer-like sequences: genomic background plus planted sites."""
    return decode(_simulate(num_sequences, seed, length)[0])


@functools.lru_cache(maxsize=1)
def program_preferences() -> np.ndarray:
    """Each chromosome's log-preference for each regulatory program ``(chromosomes, programs)``:
    a fixed draw (``PROGRAM_PREFERENCE_SEED``), part of the world like the grammar. Enhancers of
    one program cluster on some chromosomes, so the two chromosome halves use the motifs in
    different proportions."""
    rng = np.random.default_rng(PROGRAM_PREFERENCE_SEED)
    return rng.normal(0.0, PROGRAM_PREFERENCE_SD, size=(len(CHROMOSOME_WEIGHTS), len(PROGRAMS)))


def chromosome_probabilities(tilt: np.ndarray, program: np.ndarray) -> np.ndarray:
    """``P(chromosome | GC tilt, program)`` ``(n, chromosomes)``, chromosomes in the order of
    ``CHROMOSOME_WEIGHTS``: the gene-count weight, times the chromosome's preference for the
    program, times an isochore term that puts GC-rich backgrounds on GC-rich chromosomes."""
    weights = np.array(list(CHROMOSOME_WEIGHTS.values()), dtype=np.float64)
    gc = np.array([CHROMOSOME_GC[c] for c in CHROMOSOME_WEIGHTS])
    gc_z = (gc - gc.mean()) / gc.std()
    tilt_z = np.log(tilt) / GC_TILT_SD
    logits = (
        np.log(weights)[None, :]
        + program_preferences().T[program]
        + ISOCHORE_COUPLING * tilt_z[:, None] * gc_z[None, :]
    )
    probs = np.exp(logits - logits.max(1, keepdims=True))
    return probs / probs.sum(1, keepdims=True)


def assign_chromosomes(
    tilt: np.ndarray, program: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """One chromosome name per sequence, drawn from :func:`chromosome_probabilities`."""
    cdf = np.cumsum(chromosome_probabilities(tilt, program), axis=1)
    draw = (rng.random(len(tilt))[:, None] > cdf).sum(1)
    return np.array(list(CHROMOSOME_WEIGHTS))[np.minimum(draw, len(CHROMOSOME_WEIGHTS) - 1)]


def simulate_mpra(num_sequences: int, seed: int) -> pd.DataFrame:
    """A simulated MPRA in the Gosai CSV format, deterministic per ``seed``.

    Returns columns ``seq, hepg2, k562, sknsh`` (measured = truth + noise), ``chrom`` and
    ``accessible`` (0/1 HepG2 ATAC label drawn from :func:`true_accessibility`).
    """
    if num_sequences < 1:
        raise GempoError(f"simulate_mpra: num_sequences must be >= 1, got {num_sequences}")
    tokens, tilt, program = _simulate(num_sequences, seed, SEQ_LEN)
    seqs = decode(tokens)
    rng = np.random.default_rng([seed, SEQUENCE_STREAM, 1])
    terms = grammar_terms(seqs)
    z = activity_logits(terms)
    truth = ACTIVITY_MIN + (ACTIVITY_MAX - ACTIVITY_MIN) / (1.0 + np.exp(-z))
    measured = truth + rng.normal(0.0, NOISE_SD, size=truth.shape)
    accessible = rng.random(num_sequences) < _accessibility_from_terms(terms)
    chrom = assign_chromosomes(tilt, program, rng)
    frame = pd.DataFrame({"seq": seqs})
    for k, cell in enumerate(CELL_TYPES):
        frame[cell] = np.round(measured[:, k], 4)
    frame["chrom"] = chrom
    frame["accessible"] = accessible.astype(np.int64)
    return frame
