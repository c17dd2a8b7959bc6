"""Checks on generated text; a failed check becomes a named reject reason.

=================== ==========================================================
``empty``           nothing but whitespace (or under ``min_chars``).
``truncated``       the model hit ``max_tokens`` (finish reason ``length``).
``refusal``         an assistant refusal ("I'm sorry, but I can't ...").
``wrong_language``  detected language differs from the source's.
``length_ratio``    output/input characters outside the style's bounds.
``repetition``      a degenerate loop: a repeated tail, or mostly duplicated n-grams.
=================== ==========================================================

Each rule is a small pure function, so the table tests in
``tests/pipeline/rephrase/test_validation.py`` pin its behaviour.
"""

from __future__ import annotations

import re
from collections import Counter
from functools import lru_cache
from typing import Optional

from pydantic import BaseModel, ConfigDict, Field

from .engines.base import FINISH_LENGTH

EMPTY = "empty"
TRUNCATED = "truncated"
REFUSAL = "refusal"
WRONG_LANGUAGE = "wrong_language"
LENGTH_RATIO = "length_ratio"
REPETITION = "repetition"

# Openers of assistant refusals, checked on the first 300 characters only: a
# document *about* refusals should not be rejected for quoting one later on.
DEFAULT_REFUSAL_PATTERNS = [
    r"^\W*(i'?m|i am) sorry,? (but )?(i|as an ai)",
    r"^\W*i (cannot|can't|can not|won't|am unable to|'m unable to) (help|assist|comply|provide|fulfil|fulfill|do that|rewrite|rephrase)",
    r"^\W*as an ai( language model)?,? i",
    r"^\W*(sorry|unfortunately),? i (cannot|can't|am unable)",
    r"^\W*i apologi[sz]e,? but",
]


class ValidationConfig(BaseModel):
    """Output checks of the rephrase stage (each can be switched off)."""

    model_config = ConfigDict(extra="forbid")

    min_chars: int = Field(1, ge=0, description="shorter outputs (after strip) are 'empty'")
    reject_truncated: bool = True
    refusal_patterns: list[str] = Field(default_factory=lambda: list(DEFAULT_REFUSAL_PATTERNS))
    check_language: bool = Field(True, description="also needs the style's check_language")
    min_language_chars: int = Field(
        40, ge=0, description="outputs shorter than this skip the language check (detection is unreliable)"
    )
    check_length_ratio: bool = True
    check_repetition: bool = True
    max_dup_ngram_fraction: float = Field(
        0.5, gt=0, le=1, description="fraction of word 4-grams that are repeats of earlier ones"
    )
    min_tail_repeats: int = Field(4, ge=2, description="a tail unit repeated this often in a row is a loop")


def is_empty(text: str, min_chars: int = 1) -> bool:
    return len(text.strip()) < max(min_chars, 1)


def is_refusal(text: str, patterns: list[str]) -> bool:
    head = text.strip()[:300].lower().replace("\u2019", "'")
    return any(re.search(p, head) for p in patterns)


_WORD = re.compile(r"\w+", re.UNICODE)


def dup_ngram_fraction(text: str, n: int = 4) -> float:
    """Fraction of word n-grams that repeat an earlier n-gram (0 for texts under 2n words).

    CJK text has no spaces, so characters stand in for words when words are few.
    """
    words = _WORD.findall(text.lower())
    if len(words) < 4 * n and len(text) >= 8 * n:
        words = [c for c in text if not c.isspace()]
    if len(words) < 2 * n:
        return 0.0
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    counts = Counter(grams)
    repeats = sum(c - 1 for c in counts.values())
    return repeats / len(grams)


def has_repeated_tail(text: str, min_repeats: int = 4, max_unit: int = 200) -> bool:
    """True when the text ends in one unit (1..max_unit chars) repeated ``min_repeats`` times in a row.

    Degenerate sampling loops end this way ("the the the ...", a line over and over).
    """
    t = text.rstrip()
    for unit in range(1, min(max_unit, len(t) // min_repeats) + 1):
        tail = t[-unit:]
        if tail.strip() and t.endswith(tail * min_repeats):
            # a run of one character (e.g. "=====") in a short unit is formatting, not a loop
            if unit == 1 and not tail.isalnum():
                continue
            return True
    return False


def is_repetitive(text: str, cfg: ValidationConfig) -> bool:
    return has_repeated_tail(text, cfg.min_tail_repeats) or dup_ngram_fraction(text) > cfg.max_dup_ngram_fraction


def length_ratio(source: str, output: str) -> float:
    return len(output.strip()) / max(len(source.strip()), 1)


def normalize_lang(code: Optional[str]) -> Optional[str]:
    """Language code to compare on: ``zh-Hans`` -> ``zh``, ``nb``/``nn`` -> ``no``; ``None`` for unknown/no-language."""
    if not code:
        return None
    c = code.split("-")[0].split("_")[0].lower()
    if c in ("", "und", "zxx", "unknown", "code"):
        return None
    return {"nb": "no", "nn": "no", "bs": "hr", "sr": "hr", "ms": "id"}.get(c, c)


@lru_cache(maxsize=1)
def _detector():
    from lingua import LanguageDetectorBuilder

    # low-accuracy mode: trigram models only, ~10x faster and plenty for "is it the same language"
    return LanguageDetectorBuilder.from_all_languages().with_low_accuracy_mode().build()


def detect_language(text: str) -> Optional[str]:
    """ISO 639-1 code of ``text`` (lingua), or ``None`` when undetermined."""
    lang = _detector().detect_language_of(text[:2000])
    if lang is None:
        return None
    return lang.iso_code_639_1.name.lower()


def validate(
    source: str,
    output: str,
    finish_reason: str,
    cfg: ValidationConfig,
    *,
    length_bounds: Optional[tuple[float, float]] = None,
    source_lang: Optional[str] = None,
    check_language: bool = True,
) -> Optional[str]:
    """The first failed check's reason, or ``None`` when the output is acceptable.

    Args:
        source: the text that was rephrased.
        output: the generated text.
        finish_reason: ``stop`` or ``length``.
        cfg: which checks run and their thresholds.
        length_bounds: the style's ``length_ratio``.
        source_lang: the source's language code (detected from ``source`` when ``None``).
        check_language: the style's ``check_language``.

    >>> validate("Some text.", "", "stop", ValidationConfig())
    'empty'
    """
    if is_empty(output, cfg.min_chars):
        return EMPTY
    if cfg.reject_truncated and finish_reason == FINISH_LENGTH:
        return TRUNCATED
    if cfg.refusal_patterns and is_refusal(output, cfg.refusal_patterns):
        return REFUSAL
    if cfg.check_repetition and is_repetitive(output, cfg):
        return REPETITION
    if cfg.check_length_ratio and length_bounds is not None:
        r = length_ratio(source, output)
        if not (length_bounds[0] <= r <= length_bounds[1]):
            return LENGTH_RATIO
    if cfg.check_language and check_language and len(output.strip()) >= cfg.min_language_chars:
        want = normalize_lang(source_lang) if source_lang else normalize_lang(detect_language(source))
        if want is not None:
            got = normalize_lang(detect_language(output))
            if got is not None and got != want:
                return WRONG_LANGUAGE
    return None
