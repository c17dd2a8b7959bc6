"""Byte-exact round trip on arbitrary strings and arbitrary bytes (hypothesis)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

import tokenizer

# Characters a str may hold and Rust accepts: every code point but lone surrogates.
TEXT = st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=200)


@settings(max_examples=300, deadline=None)
@given(TEXT)
def test_text_round_trip(small_tok, text):
    ids = small_tok.encode(text, add_special_tokens=False).ids
    assert small_tok.decode(ids, skip_special_tokens=False) == text
    assert tokenizer.decode_bytes(small_tok, ids) == text.encode("utf-8")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_bytes_round_trip(small_tok, data):
    ids = tokenizer.encode_bytes(small_tok, data)
    assert tokenizer.decode_bytes(small_tok, ids) == data
    assert all(0 <= i < small_tok.get_vocab_size() for i in ids)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(["12", "007", " ", "東京", "abc", "\n", "\xff", "😀", "٣", "1,234"]), max_size=30))
def test_mixed_round_trip(small_tok, parts):
    data = "".join(parts).encode("utf-8").replace(b"\xc3\xbf", b"\xff")  # sprinkle invalid UTF-8
    assert tokenizer.decode_bytes(small_tok, tokenizer.encode_bytes(small_tok, data)) == data


def test_invalid_utf8_examples(small_tok):
    for data in [b"\xff", b"\xc3", b"abc\xe6\x9d", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"ok\xff\xfe ok 123\x80"]:
        ids = tokenizer.encode_bytes(small_tok, data)
        assert tokenizer.decode_bytes(small_tok, ids) == data
