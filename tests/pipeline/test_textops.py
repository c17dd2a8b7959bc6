"""The compiled n-gram scans (``pipeline._textops``) equal their NumPy references."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.stages.filters._ngrams import (
    dup_ngram_chars,
    dup_ngram_chars_reference,
    top_ngram_chars,
    top_ngram_chars_reference,
)

# Few distinct values, so repeats, ties and overlapping repeats are common.
_KEYS = st.lists(st.integers(0, 6), min_size=1, max_size=200)


def _arrays(keys: list[int], seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    # Spread the few keys over the 64-bit range (as real n-gram hashes are) and include 0.
    table = np.array([0, 1, 2**63, 2**64 - 1, 0x9E3779B97F4A7C15, 12345, 2**32], np.uint64)
    h = table[np.array(keys)]
    chars = rng.integers(1, 50, len(keys)).astype(np.int64)
    return h, chars


@settings(max_examples=300, deadline=None)
@given(_KEYS, st.integers(1, 10), st.integers(0, 1000))
def test_dup_ngram_chars_equals_reference(keys, n, seed):
    h, chars = _arrays(keys, seed)
    assert dup_ngram_chars(h, chars, n) == dup_ngram_chars_reference(h, chars, n)


@settings(max_examples=300, deadline=None)
@given(_KEYS, st.integers(1, 10), st.integers(0, 1000))
def test_top_ngram_chars_equals_reference(keys, n, seed):
    h, chars = _arrays(keys, seed)
    assert top_ngram_chars(h, chars, n) == top_ngram_chars_reference(h, chars, n)


def test_large_document():
    rng = np.random.default_rng(0)
    h = rng.integers(0, 5000, 200_000).astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    chars = rng.integers(1, 80, len(h)).astype(np.int64)
    for n in (2, 5, 10):
        assert dup_ngram_chars(h, chars, n) == dup_ngram_chars_reference(h, chars, n)
        assert top_ngram_chars(h, chars, n) == top_ngram_chars_reference(h, chars, n)


def test_bad_arguments_are_errors():
    from pipeline import _textops

    h = np.zeros(3, np.uint64)
    with pytest.raises(ValueError, match="differ in length"):
        _textops.dup_ngram_chars(h, np.zeros(2, np.int64), 2)
    with pytest.raises(ValueError, match="at least 1"):
        _textops.dup_ngram_chars(h, np.zeros(3, np.int64), 0)
    with pytest.raises(ValueError, match="no n-grams"):
        _textops.top_ngram_chars(h[:0], np.zeros(0, np.int64), 2)
    with pytest.raises(TypeError):
        _textops.dup_ngram_chars(h.astype(np.int64), np.zeros(3, np.int64), 2)  # wrong dtype: refused
    assert _textops.dup_ngram_chars(h[:0], np.zeros(0, np.int64), 3) == 0
