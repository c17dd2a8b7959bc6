"""Output validation rules, table-tested: each case names the reason it must produce."""

from __future__ import annotations

import pytest

from pipeline.rephrase.validation import (
    ValidationConfig,
    dup_ngram_fraction,
    has_repeated_tail,
    normalize_lang,
    validate,
)

SRC = "Water boils at one hundred degrees Celsius at sea level, and at lower temperatures higher up in the mountains."
OK_EN = "At sea level water boils at 100 degrees Celsius; in the mountains it boils at a lower temperature."
LONG_EN = " ".join(f"Fact {i}: water at altitude {i * 300} metres boils near {100 - i} degrees." for i in range(12))
CFG = ValidationConfig()

CASES = [
    # (output, finish_reason, bounds, source_lang, check_language, expected)
    (OK_EN, "stop", (0.2, 2.5), "en", True, None),
    ("", "stop", None, "en", True, "empty"),
    ("   \n\t ", "stop", None, "en", True, "empty"),
    (OK_EN, "length", None, "en", True, "truncated"),
    ("I'm sorry, but I can't help with that request.", "stop", None, "en", True, "refusal"),
    ("I cannot rewrite this text because it contains personal data.", "stop", None, "en", True, "refusal"),
    ("As an AI language model, I do not have opinions.", "stop", None, "en", True, "refusal"),
    ("Sorry, I can't do that.", "stop", None, "en", True, "refusal"),
    # a text that merely mentions an apology later is fine
    (OK_EN + " Nobody said 'I'm sorry, but I can't' here.", "stop", (0.1, 3.0), "en", True, None),
    (OK_EN + " the the the the the the the the", "stop", None, "en", True, "repetition"),
    (OK_EN + "\nboil water.\nboil water.\nboil water.\nboil water.", "stop", None, "en", True, "repetition"),
    (" ".join(["water boils at sea level"] * 12), "stop", None, "en", True, "repetition"),
    ("Water boils.", "stop", (0.2, 2.5), "en", True, "length_ratio"),
    (LONG_EN, "stop", (0.2, 2.5), "en", True, "length_ratio"),
    ("Auf Meereshöhe siedet Wasser bei hundert Grad Celsius, in den Bergen dagegen bei niedrigeren Temperaturen.",
     "stop", None, "en", True, "wrong_language"),
    # the style or the config switches the language check off
    ("Auf Meereshöhe siedet Wasser bei hundert Grad Celsius, in den Bergen dagegen bei niedrigeren Temperaturen.",
     "stop", None, "en", False, None),
    # source language unknown (code) -> no language check
    ("Auf Meereshöhe siedet Wasser bei hundert Grad Celsius, in den Bergen dagegen bei niedrigeren Temperaturen.",
     "stop", None, "zxx", True, None),
    # Chinese source given as zh-Hans matches detected zh
    ("水在海平面上于摄氏一百度沸腾，在山上沸点更低，因为气压较低，所以煮饭需要更长的时间。", "stop", None, "zh-Hans", True, None),
    # a separator line of '=' is formatting, not a loop
    ("Title\n=====\n" + OK_EN, "stop", None, "en", True, None),
]


@pytest.mark.parametrize("output,finish,bounds,lang,check_lang,expected", CASES)
def test_validate_table(output, finish, bounds, lang, check_lang, expected):
    got = validate(SRC, output, finish, CFG, length_bounds=bounds, source_lang=lang, check_language=check_lang)
    assert got == expected


def test_switches_turn_rules_off():
    cfg = ValidationConfig(reject_truncated=False, check_repetition=False, refusal_patterns=[], check_length_ratio=False)
    assert validate(SRC, "I'm sorry, but I can't. the the the the the", "length", cfg, length_bounds=(5, 6)) is None
    assert validate(SRC, "ab", "stop", ValidationConfig(min_chars=3)) == "empty"


def test_source_language_is_detected_when_not_given():
    de = "Der schnelle braune Fuchs springt über den faulen Hund und läuft dann weit in den dunklen Wald hinein."
    assert validate(de, OK_EN, "stop", CFG, source_lang=None) == "wrong_language"


@pytest.mark.parametrize("code,norm", [("zh-Hans", "zh"), ("nb", "no"), ("NN", "no"), ("zxx", None), (None, None), ("pt_BR", "pt")])
def test_normalize_lang(code, norm):
    assert normalize_lang(code) == norm


def test_repetition_measures():
    assert dup_ngram_fraction("one two three four five six seven eight nine ten") == 0.0
    assert dup_ngram_fraction("a b c d " * 10) > 0.8
    assert dup_ngram_fraction("循环" * 40) > 0.8  # CJK falls back to characters
    assert has_repeated_tail("xyz " + "ab" * 4)
    assert not has_repeated_tail("a normal ending.")
