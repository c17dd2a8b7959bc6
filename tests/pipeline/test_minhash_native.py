"""The compiled MinHash path (``pipeline._minhash``) equals the NumPy/Python reference bit for bit."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import xxhash
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline import _minhash
from pipeline.stages.dedup.minhash import BANDS, MinHashConfig, MinHashDedup, MinHasher

# Words from several scripts, digits of several scripts (Arabic-Indic, Devanagari,
# fullwidth: all `\d`), underscores, punctuation, combining marks, emoji, a lone surrogate.
_PIECES = st.sampled_from(["word", "Straße", "ΣΊΣΥΦΟΣ", "İstanbul", "中文字", "ไทย", "한국어", "123", "٣٤", "४२",
                           "１２", "x_y", "__", " ", "  ", "\n", ".", ",", "-", "é", "e\u0301", "😀", "\ud800",
                           "Ⅻ", "½", "²", "ǅ", "ﬁ"])
_TEXT = st.lists(_PIECES, max_size=60).map("".join) | st.text(max_size=200)


@settings(max_examples=400, deadline=None)
@given(_TEXT, st.integers(1, 7), st.integers(1, 50))
def test_shingles_equal_reference(text, ngram, cap):
    h = MinHasher(MinHashConfig(ngram=ngram, max_shingles=cap))
    np.testing.assert_array_equal(h.shingles(text), h.shingles_reference(text))


@settings(max_examples=300, deadline=None)
@given(st.lists(_TEXT, max_size=6), st.integers(1, 6), st.integers(1, 6), st.integers(1, 4), st.integers(0, 9))
def test_band_keys_equal_reference(texts, ngram, bands, rows, seed):
    h = MinHasher(MinHashConfig(ngram=ngram, num_bands=bands, rows_per_band=rows, seed=seed))
    keys, counts = h.band_keys_batch(texts)
    ref = [h.band_keys_reference(t) for t in texts]
    assert counts.tolist() == [len(r) for r in ref]
    assert keys.tolist() == [k for r in ref for k in r]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=100), st.integers(0, 2**64 - 1))
def test_xxh64_equals_the_xxhash_package(data, seed):
    assert _minhash.xxh64(data, seed) == xxhash.xxh64_intdigest(data, seed=seed)


def test_prepare_gives_the_same_band_lists_as_the_reference():
    texts = ["the quick brown fox jumps over the lazy dog " * 3, None, "", "!!! ...", "short text", "数字 ١٢٣ 42"]
    stage = MinHashDedup(MinHashConfig())
    out = stage.prepare(pa.table({"text": texts}))
    assert out.column(BANDS).type == pa.list_(pa.int64())
    assert out.column(BANDS).to_pylist() == [stage.hasher.band_keys_reference(t or "") for t in texts]


def test_band_keys_refuse_bad_input():
    h = MinHasher(MinHashConfig())
    with pytest.raises(TypeError, match=r"texts\[1\] is not a str"):
        _minhash.band_keys(["ok", b"bytes"], h.a, h.b, 5, 100, 14, 8)
    with pytest.raises(ValueError, match="num_bands"):
        _minhash.band_keys(["ok"], h.a[:10], h.b, 5, 100, 14, 8)
    with pytest.raises(TypeError):  # float seeds are not silently converted
        _minhash.band_keys(["ok"], h.a.astype(np.float64), h.b, 5, 100, 14, 8)


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f\x85\xa0\u1680\u2000\u2028\u3000\u200b_")),
               max_size=40) | st.text(max_size=80))
def test_exact_dedup_whitespace_collapse_equals_the_regex(text):
    """exact_dedup collapses whitespace with str.split; it must equal re's \\s+ (the definition)."""
    import re

    from pipeline.stages.dedup.exact import ExactDedup, ExactDedupConfig

    stage = ExactDedup(ExactDedupConfig())
    expected = xxhash.xxh64_intdigest(re.sub(r"\s+", " ", text).strip().lower().encode("utf-8", "surrogatepass"))
    assert stage.prepare(pa.table({"text": [text]})).column("_exact_hash").to_pylist() == [expected - (1 << 63)]
