"""DNA sequences as strings, tokens (0..3) and one-hot tensors; FASTA in and out.

Tokens follow ``ALPHABET``: A=0, C=1, G=2, T=3. Enhancers in this project are ``SEQ_LEN`` = 200 bp.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from Bio import SeqIO
from Bio.Seq import Seq
from Bio.SeqRecord import SeqRecord

from gempo.errors import GempoError
from gempo.runs import atomic_output

ALPHABET = "ACGT"
VOCAB_SIZE = 4
SEQ_LEN = 200

# Byte -> token lookup; -1 marks a character outside ACGT (lower case is accepted).
_LOOKUP = np.full(256, -1, dtype=np.int8)
for _token, _char in enumerate(ALPHABET):
    _LOOKUP[ord(_char)] = _token
    _LOOKUP[ord(_char.lower())] = _token
_ALPHABET_BYTES = np.frombuffer(ALPHABET.encode("ascii"), dtype=np.uint8)
log = logging.getLogger(__name__)


def find_checkpoint(path: str | Path, kind: str) -> Path:
    """An existing ``kind`` checkpoint file: absolute paths as given; a relative path is tried
    against the working directory, then the ``dna`` package (so ``assets/oracles/atac.pt``
    finds the shipped file)."""
    path = Path(path).expanduser()
    package_dir = Path(__file__).resolve().parent
    candidates = [path] if path.is_absolute() else [Path.cwd() / path, package_dir / path]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    tried = " or ".join(str(c) for c in candidates)
    raise GempoError(f"{kind} checkpoint {str(path)!r} not found (looked for {tried})")


def read_checkpoint(
    path: Path, map_location: str | torch.device = "cpu", trusted: bool = False
) -> dict:
    """The dict saved in a PyTorch checkpoint file, read weights-only (tensors and plain
    containers, no pickled code); a file that is unreadable or holds something else is a
    one-line :class:`GempoError`. ``trusted``: a file that also holds pickled objects (a
    published Lightning checkpoint's config) is then read in full, with a warning."""
    payload = load_weights_only_first(
        lambda weights_only: torch.load(path, map_location=map_location, weights_only=weights_only),
        path,
        trusted,
    )
    if not isinstance(payload, dict):
        raise GempoError(f"{path}: expected a checkpoint dict, got {type(payload).__name__}")
    return payload


def load_weights_only_first(load: Callable[[bool], Any], path: Path, trusted: bool) -> Any:
    """``load(weights_only)`` with ``weights_only=True``; when that refuses pickled objects and
    the file is ``trusted``, again with ``False``. Returns what ``load`` returns; a file it
    cannot read is a one-line error."""
    try:
        payload = load(True)
    except Exception as err:  # noqa: BLE001 - any unreadable file is a user error here
        refused = isinstance(err, pickle.UnpicklingError) and "Weights only" in str(err)
        if not (trusted and refused):
            raise GempoError(
                f"{path}: not a readable PyTorch checkpoint ({type(err).__name__})"
            ) from err
        log.warning("%s holds pickled objects besides tensors; reading it in full", path)
        try:
            payload = load(False)
        except Exception as second:  # noqa: BLE001
            raise GempoError(f"{path}: not a readable checkpoint ({second})") from second
    return payload


def encode_array(seqs: Sequence[str]) -> np.ndarray:
    """Sequences of one length -> int8 array ``(batch, length)`` of tokens 0..3.

    Raises GempoError naming the sequence index and the offending character or length.
    """
    seqs = list(seqs)
    if not seqs:
        return np.zeros((0, 0), dtype=np.int8)
    length = len(seqs[0])
    for index, seq in enumerate(seqs):
        if not isinstance(seq, str):
            raise GempoError(f"sequence {index}: expected a string of A/C/G/T, got {seq!r}")
        if len(seq) != length:
            raise GempoError(
                f"sequence {index}: length {len(seq)}, expected {length} like sequence 0"
            )
    try:
        raw = np.frombuffer("".join(seqs).encode("ascii"), dtype=np.uint8)
    except UnicodeEncodeError as err:
        index = next(i for i, s in enumerate(seqs) if not s.isascii())
        raise GempoError(f"sequence {index}: non-ASCII character; expected only A/C/G/T") from err
    tokens = _LOOKUP[raw].reshape(len(seqs), length)
    bad = np.argwhere(tokens < 0)
    if len(bad):
        row, col = (int(v) for v in bad[0])
        raise GempoError(
            f"sequence {row}: character {seqs[row][col]!r} at position {col} is not one of "
            f"{ALPHABET} ({len(bad)} bad characters in total)"
        )
    return tokens


def encode(seqs: Sequence[str]) -> torch.Tensor:
    """Sequences of one length -> LongTensor ``(batch, length)`` of tokens 0..3 (A, C, G, T)."""
    return torch.from_numpy(encode_array(seqs).astype(np.int64))


def decode(tokens: torch.Tensor | np.ndarray) -> list[str]:
    """Tokens ``(batch, length)`` with values 0..3 -> list of ``batch`` strings over ACGT."""
    array = tokens.detach().cpu().numpy() if isinstance(tokens, torch.Tensor) else tokens
    array = np.asarray(array)
    if array.ndim != 2:
        raise GempoError(f"decode: expected tokens of shape (batch, length), got {array.shape}")
    if array.size and (array.min() < 0 or array.max() >= VOCAB_SIZE):
        raise GempoError(
            f"decode: token values must be in 0..{VOCAB_SIZE - 1}, "
            f"got range {int(array.min())}..{int(array.max())}"
        )
    chars = _ALPHABET_BYTES[array.astype(np.int64)]
    return [row.tobytes().decode("ascii") for row in chars]


def one_hot(tokens: torch.Tensor) -> torch.Tensor:
    """Tokens ``(batch, length)`` -> float one-hot ``(batch, 4, length)`` (channels A, C, G, T)."""
    return torch.nn.functional.one_hot(tokens.long(), VOCAB_SIZE).transpose(1, 2).float()


def oracle_input(x: torch.Tensor) -> torch.Tensor:
    """An oracle's input as a float one-hot ``(batch, 4, L)``: tokens ``(batch, L)`` are
    encoded, a float ``(batch, 4, L)`` (one-hot or relaxed, for gradients) passes as it is."""
    if x.dtype.is_floating_point:
        if x.dim() != 3 or x.shape[1] != VOCAB_SIZE:
            raise GempoError(f"oracle: float input must be (batch, 4, L), got {tuple(x.shape)}")
        return x
    if x.dim() != 2:
        raise GempoError(f"oracle: token input must be (batch, L), got {tuple(x.shape)}")
    return one_hot(x)


def reverse_complement(seq: str) -> str:
    """Reverse complement of an ACGT string."""
    return seq[::-1].translate(str.maketrans("ACGTacgt", "TGCAtgca"))


def read_fasta(path: str | Path) -> list[str]:
    """Read all records of a FASTA file as upper-case ACGT strings (any lengths).

    Raises GempoError naming the file and record for a missing/empty file or a bad character.
    """
    path = Path(path)
    if not path.is_file():
        raise GempoError(f"{path}: FASTA file not found")
    seqs: list[str] = []
    with path.open() as handle:
        for number, record in enumerate(SeqIO.parse(handle, "fasta")):
            seq = str(record.seq).upper()
            char = next((c for c in seq if c not in ALPHABET), None)
            if char is not None:
                raise GempoError(
                    f"{path}: record {number} ({record.id}): character {char!r} at position "
                    f"{seq.index(char)} is not one of {ALPHABET}"
                )
            seqs.append(seq)
    if not seqs:
        raise GempoError(f"{path}: no FASTA records found (expected lines like '>id' then ACGT)")
    return seqs


def write_fasta(path: str | Path, seqs: Sequence[str], ids: Sequence[str] | None = None) -> Path:
    """Write sequences to a FASTA file atomically; ``ids`` default to ``seq0, seq1, ...``."""
    seqs = list(seqs)
    ids = [f"seq{i}" for i in range(len(seqs))] if ids is None else list(ids)
    if len(ids) != len(seqs):
        raise GempoError(f"write_fasta: {len(ids)} ids for {len(seqs)} sequences")
    records = (SeqRecord(Seq(s), id=str(i), description="") for s, i in zip(seqs, ids, strict=True))
    path = Path(path)
    with atomic_output(path) as tmp:
        SeqIO.write(records, tmp, "fasta")
    return path
