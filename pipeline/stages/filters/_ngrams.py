"""Vectorised n-gram statistics for the Gopher repetition rules (NumPy, one hash per n-gram).

Instead of joining strings per n-gram (what DataTrove does), each n-gram gets a 64-bit
hash built from its words' hashes, and equal n-grams are found with one sort. Two keys
exist because DataTrove uses two: word sequences for the "top n-gram" rules
(:func:`word_ngram_hashes`) and words joined without separator for the "duplicated
n-gram" rules (:func:`joined_ngram_hashes`, ``"ab"+"c"`` equals ``"a"+"bc"``).

The two scans over those hashes (:func:`top_ngram_chars`, :func:`dup_ngram_chars`) run in
the compiled ``pipeline._textops`` (one pass over a hash table each); the NumPy versions
here (``*_reference``) are what they are tested against.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

from pipeline import _textops

_P = np.uint64(0x9E3779B97F4A7C15)
_Q = 0x100000001B3  # odd: invertible modulo 2**64
_QI = pow(_Q, -1, 2**64)

NgramHashes = Iterator[tuple[int, np.ndarray, np.ndarray]]


def _power_table(base: int, size: int) -> np.ndarray:
    with np.errstate(over="ignore"):
        return np.concatenate(([np.uint64(1)], np.cumprod(np.full(size - 1, base, np.uint64))))


class HashPowers:
    """``Q**t`` and ``Q**-t`` modulo 2**64 for the positions of a document, kept for reuse.

    The tables grow (doubling) to the longest document seen, but never past
    ``max_positions`` (16 bytes a position: 16 MiB at the default); a longer document gets
    tables computed for it alone, freed with it. Owned by a stage, not the module, so a
    worker holds one bounded pair per stage.
    """

    def __init__(self, max_positions: int = 1 << 20):
        self.max_positions = max_positions
        self._pow = np.ones(1, np.uint64)
        self._inv = np.ones(1, np.uint64)

    def __getstate__(self) -> dict[str, int]:
        return {"max_positions": self.max_positions}

    def __setstate__(self, state: dict[str, int]) -> None:
        self.__init__(state["max_positions"])  # type: ignore[misc]

    @property
    def kept_positions(self) -> int:
        """Positions the kept tables cover."""
        return len(self._pow)

    def get(self, size: int) -> tuple[np.ndarray, np.ndarray]:
        """Tables of at least ``size`` positions."""
        if size <= len(self._pow):
            return self._pow, self._inv
        if size > self.max_positions:
            return _power_table(_Q, size), _power_table(_QI, size)
        size = min(max(size, 2 * len(self._pow)), self.max_positions)
        self._pow, self._inv = _power_table(_Q, size), _power_table(_QI, size)
        return self._pow, self._inv


def word_ngram_hashes(words: list[str], lens: np.ndarray, ns: list[int]) -> NgramHashes:
    """Yield (n, hash per n-gram, chars per n-gram without separators) for each n in ``ns``.

    An n-gram is its word sequence (DataTrove joins with spaces, and words hold no spaces).
    """
    ids = np.fromiter(map(hash, words), np.int64, len(words)).view(np.uint64)
    h = ids * _P + np.uint64(1)
    chars = lens.copy()
    with np.errstate(over="ignore"):
        for n in range(1, max(ns) + 1):
            if n > 1:
                if len(h) <= 1:
                    return
                h = h[:-1] * _P + ids[n - 1 :]
                chars = chars[:-1] + lens[n - 1 :]
            if n in ns:
                yield n, h, chars


def joined_ngram_hashes(words: list[str], lens: np.ndarray, ns: list[int],
                        powers: HashPowers | None = None) -> NgramHashes:
    """Yield (n, hash per n-gram, chars per n-gram) where an n-gram is its words joined
    without separator, as DataTrove's ``find_all_duplicate`` keys them ("ab"+"c" equals
    "a"+"bc"): a polynomial hash of the characters, position-independent, plus the length."""
    joined = "".join(words)
    size = len(joined)
    codes = np.frombuffer(joined.encode("utf-32-le"), "<u4").astype(np.uint64)
    qpow, qinv = (powers or HashPowers(0)).get(size + 1)
    off = np.zeros(len(words) + 1, np.int64)
    np.cumsum(lens, out=off[1:])
    with np.errstate(over="ignore"):
        prefix = np.zeros(size + 1, np.uint64)
        np.cumsum((codes * _P + np.uint64(1)) * qpow[:size], out=prefix[1:])
        for n in ns:
            if len(words) < n:
                continue
            a, b = off[:-n], off[n:]
            chars = b - a
            h = (prefix[b] - prefix[a]) * qinv[a] + chars.astype(np.uint64) * _P
            yield n, h, chars


def _group(h: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Equal values of ``h``: (group of each position, first position of each group, group
    sizes). One unstable sort (NumPy's vectorised quicksort), faster than ``np.unique``'s."""
    order = np.argsort(h)
    ordered = h[order]
    new = np.empty(len(h), bool)
    new[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=new[1:])
    inverse = np.empty(len(h), np.int64)
    inverse[order] = np.cumsum(new) - 1
    starts = np.flatnonzero(new)
    first = np.minimum.reduceat(order, starts)
    sizes = np.diff(np.append(starts, len(h)))
    return inverse, first, sizes


def top_ngram_chars_reference(h: np.ndarray, chars: np.ndarray, n: int) -> int:
    """Characters covered by the most frequent n-gram (ties: the one seen first), spaces included."""
    _, first, counts = _group(h)
    best = counts.max()
    i = first[counts == best].min()
    return int(chars[i] + (n - 1)) * int(best)


def dup_ngram_chars_reference(h: np.ndarray, chars: np.ndarray, n: int) -> int:
    """Characters in repeated n-grams, scanning left to right and skipping past each repeat
    (DataTrove's ``find_all_duplicate``: an n-gram counts as seen only where the scan
    stopped on it, not where it jumped over it)."""
    inverse, first, _ = _group(h)
    repeat = first[inverse] < np.arange(len(h))
    if not repeat.any():
        return 0
    start = int(np.argmax(repeat))
    # Before the first repeat every position is visited and new: mark them seen at once.
    marks = np.zeros(len(first), np.uint8)
    marks[inverse[:start]] = 1
    seen = bytearray(marks.tobytes())
    keys, cl = inverse.tolist(), chars.tolist()
    total, idx, end = 0, start, len(keys)
    while idx < end:
        x = keys[idx]
        if seen[x]:
            total += cl[idx]
            idx += n
        else:
            seen[x] = 1
            idx += 1
    return total


def top_ngram_chars(h: np.ndarray, chars: np.ndarray, n: int) -> int:
    """:func:`top_ngram_chars_reference`, compiled (``h`` must not be empty)."""
    return _textops.top_ngram_chars(h, chars, n)


def dup_ngram_chars(h: np.ndarray, chars: np.ndarray, n: int) -> int:
    """:func:`dup_ngram_chars_reference`, compiled."""
    return _textops.dup_ngram_chars(h, chars, n)
