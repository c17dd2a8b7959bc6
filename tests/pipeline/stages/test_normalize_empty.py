"""Normalize's notion of "empty" against Unicode categories: invisible-only text is rejected.

    .venv/bin/python -m pytest tests/pipeline/stages/test_normalize_empty.py -q
"""

from __future__ import annotations

import sys
import unicodedata

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.stages.normalize import Normalize, has_visible, is_invisible

# Every invisible character Python's Unicode database knows (categories and the ignorable set).
INVISIBLE = [chr(i) for i in range(sys.maxunicode + 1)
             if unicodedata.category(chr(i)) in {"Cc", "Cf", "Zs", "Zl", "Zp"} or chr(i).isspace()]
NAMED = ["\u200b", "\ufeff", "\u200d", "\u200c", "\u2060", "\u00ad", "\u200e", "\u202e", "\u3000", "\u00a0",
         "\u2800", "\u3164", "\ufe0f", "\U000e0041", "\u180e", "\u115f"]


def _reasons(texts: list[str]) -> list[str | None]:
    res = Normalize().process(pa.table({"id": [str(i) for i in range(len(texts))], "text": texts}))
    by_id = dict(zip(res.rejected.column("id").to_pylist(), res.rejected.column("reject_reason").to_pylist()))
    by_id.update({i: None for i in res.kept.column("id").to_pylist()})
    return [by_id[str(i)] for i in range(len(texts))]


@pytest.mark.parametrize("ch", NAMED)
def test_named_invisible_characters_make_empty_documents(ch):
    assert is_invisible(ch)
    assert _reasons([ch, ch * 50 + "\n \t" + ch, f"{ch}hello{ch}"]) == ["empty", "empty", None]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(INVISIBLE + NAMED), min_size=1, max_size=40).map("".join))
def test_invisible_only_text_is_empty(text):
    assert not has_visible(text)
    assert _reasons([text]) == ["empty"]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(INVISIBLE + NAMED), max_size=20).map("".join),
       st.characters(categories=["L", "N", "P", "S"]), st.lists(st.sampled_from(INVISIBLE + NAMED), max_size=20).map("".join))
def test_one_visible_character_keeps_a_document(before, visible, after):
    if visible in "\ufffd" or visible in {"\u2800", "\u3164", "\uffa0", "\u115f", "\u1160"}:
        return  # broken-UTF-8 marker / blank fillers: not a visible character by design
    text = before + visible + after
    assert has_visible(text)
    assert _reasons([text]) == [None]


@given(st.text())
def test_has_visible_is_any_non_invisible_character(text):
    assert has_visible(text) == any(not is_invisible(c) for c in text)


def test_invisible_agrees_with_unicode_categories():
    for ch in INVISIBLE:
        assert is_invisible(ch), f"U+{ord(ch):04X} {unicodedata.name(ch, '?')}"
    for ch in "aZ09.,;!?\u00e9\u4e2d\u0627\u05d0\U0001f600\u0301":
        assert not is_invisible(ch)
