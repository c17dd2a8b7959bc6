"""Table-driven tests of the pre-tokenization rules (digits, scripts, code, whitespace)."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tokenizer.pretokenize import (
    DIGIT_GROUPS_PATTERN,
    MAIN_PATTERN,
    TIKTOKEN_PATTERN,
    TIKTOKEN_STRICT_PATTERN,
    build_pre_tokenizer,
    forced_digit_strings,
    split_text,
)
from tokenizer_cases import CODE_AND_SPACE, DIGITS, SCRIPTS, STRICT_CJK

# Characters where the one-regex form could drift from the pipeline: digits
# (ASCII and not), spaces and line breaks, ZWJ/ZWNJ and marks at word starts,
# kana marks of script Common, letters of several scripts in both cases,
# apostrophes, punctuation and emoji.
_TRICKY = list("0123456789 \t\n\r.,'’_-(aZé") + [
    "\u200d", "\u200c", "\u0301", "\u3099", "ー", "ｰ", "ﾞ", "゛", "〆", "々", "〼", "・",
    "東", "に", "カ", "한", "ก", "Ж", "ж", "Ω", "ω", "ع", "ह", "\u093f", "１", "٣", "²", "😀", "👍",
]

@pytest.mark.parametrize("text,expected", DIGITS + SCRIPTS + CODE_AND_SPACE)
def test_split(text, expected):
    assert split_text(text) == expected
    assert "".join(split_text(text)) == text


@pytest.mark.parametrize("text,_", DIGITS + SCRIPTS + CODE_AND_SPACE)
def test_tiktoken_pattern_matches_pipeline(text, _):
    """The one-regex form used for tiktoken splits exactly like the 2-step pipeline."""
    regex = pytest.importorskip("regex")  # same syntax (V1: set operations), pure Python side

    pieces = [m.group(0) for m in regex.finditer(TIKTOKEN_PATTERN, text, flags=regex.V1)]
    assert pieces == split_text(text)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(_TRICKY), max_size=40).map("".join))
def test_tiktoken_pattern_matches_pipeline_random(text):
    regex = pytest.importorskip("regex")

    pieces = [m.group(0) for m in regex.finditer(TIKTOKEN_PATTERN, text, flags=regex.V1)]
    assert pieces == split_text(text)


def test_tiktoken_pattern_digit_runs():
    """The one-regex digit rule (look-behind for the triples) on runs of every
    length mod 3, at the start, middle and end of the text."""
    regex = pytest.importorskip("regex")
    for n in range(1, 13):
        for text in ["1" * n, f"a {'9' * n}", f"{'5' * n}x", f"x{'0' * n} 7{'1' * n}"]:
            pieces = [m.group(0) for m in regex.finditer(TIKTOKEN_PATTERN, text, flags=regex.V1)]
            assert pieces == split_text(text), text


@pytest.mark.parametrize("text,expected", STRICT_CJK)
def test_strict_cjk_rule(text, expected):
    """`trinity_strict` keeps Han, Hiragana and Katakana apart; its one-regex form agrees."""
    regex = pytest.importorskip("regex")

    assert split_text(text, "trinity_strict") == expected
    pieces = [m.group(0) for m in regex.finditer(TIKTOKEN_STRICT_PATTERN, text, flags=regex.V1)]
    assert pieces == expected


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(_TRICKY), max_size=40).map("".join))
def test_tiktoken_strict_pattern_matches_pipeline_random(text):
    regex = pytest.importorskip("regex")

    pieces = [m.group(0) for m in regex.finditer(TIKTOKEN_STRICT_PATTERN, text, flags=regex.V1)]
    assert pieces == split_text(text, "trinity_strict")


def test_cjk_class_joins_only_han_and_kana():
    """The default joins Han and kana, and nothing else: Hangul, Latin and digits stay apart."""
    assert split_text("東京ABC 한국") == ["東京", "ABC", " 한국"]
    assert split_text("コーヒーを飲む2024年") == ["コーヒーを飲む", "2", "024", "年"]
    assert split_text("ひらがなカタカナ漢字ภาษา") == ["ひらがなカタカナ漢字", "ภาษา"]


def test_kind_of_reads_the_saved_rule():
    from tokenizers import Tokenizer, models

    from tokenizer.pretokenize import PRETOKENIZERS, kind_of

    for kind in PRETOKENIZERS:
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = build_pre_tokenizer(kind)
        assert kind_of(Tokenizer.from_str(tok.to_str())) == kind


@pytest.mark.parametrize("text", ["1234567", "東京2024年", "I don't", "x == 10"])
def test_gpt4o_baseline_differs_on_digits(text):
    pieces = split_text(text, "gpt4o")
    assert "".join(pieces) == text
    if text == "1234567":
        assert pieces == ["123", "456", "7"]  # left-aligned: the thing we fix


def test_no_backslash_d():
    """`\\d` is every Unicode digit in Oniguruma; the rules must spell [0-9]."""
    assert all("\\d" not in p for p in (MAIN_PATTERN, DIGIT_GROUPS_PATTERN, TIKTOKEN_PATTERN, TIKTOKEN_STRICT_PATTERN))


@pytest.mark.timeout(60)
def test_megabyte_digit_run_is_linear():
    """A quadratic right-aligned look-ahead needs minutes for 1 MB; ours is linear."""
    n = 1_000_000
    started = time.perf_counter()
    pieces = split_text("7" * (n + 1))
    elapsed = time.perf_counter() - started
    assert pieces[0] == "77" and all(p == "777" for p in pieces[1:])
    assert len(pieces) == n // 3 + 1
    # Generous bound for a loaded 2-core machine; quadratic takes minutes.
    assert elapsed < 30, elapsed


def test_byte_level_maps_space():
    pieces = [p for p, _ in build_pre_tokenizer().pre_tokenize_str("a 1")]
    assert pieces == ["a", "Ġ1"]


def test_forced_digit_strings():
    s = forced_digit_strings()
    assert len(s) == 2 * (10 + 100 + 1000) and len(set(s)) == len(s)
    assert {"0", "00", "000", "007", "999", " 0", " 007", " 999"} <= set(s)
    assert len(forced_digit_strings(space_prefix=False)) == 1110


def test_unknown_kind():
    with pytest.raises(ValueError, match="unknown pre-tokenizer"):
        build_pre_tokenizer("nope")
