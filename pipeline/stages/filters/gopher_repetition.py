"""Gopher repetition rules (Rae et al. 2021, "Scaling Language Models: Methods, Analysis &
Insights from Training Gopher", Table A1, https://arxiv.org/abs/2112.11446).

Duplicated lines and paragraphs, the most frequent 2-4-gram and repeated 5-10-grams, each
as DataTrove's ``GopherRepetitionFilter`` counts them; the n-gram statistics are
vectorised (``_ngrams.py``).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pyarrow as pa
from pydantic import Field

from pipeline.stages.base import FilterConfig, register_stage
from pipeline.stages.filters._doc import Doc, find_duplicates, ratio
from pipeline.stages.filters._ngrams import dup_ngram_chars, joined_ngram_hashes, top_ngram_chars, word_ngram_hashes
from pipeline.stages.filters.rule_set import RuleResult, Rules, RuleSetFilter

_PARAGRAPHS = re.compile(r"\n{2,}")
_LINES = re.compile(r"\n+")


class GopherRepetitionRules(Rules):
    """Gopher repetition rules (Rae et al. 2021, Table A1); ``None`` disables a rule."""

    dup_line_frac: float | None = 0.3
    dup_para_frac: float | None = 0.3
    dup_line_char_frac: float | None = 0.2
    dup_para_char_frac: float | None = 0.2
    top_n_grams: dict[int, float] = Field(default_factory=lambda: {2: 0.2, 3: 0.18, 4: 0.16})
    dup_n_grams: dict[int, float] = Field(
        default_factory=lambda: {5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10})


class GopherRepetitionConfig(FilterConfig, GopherRepetitionRules):
    """Gopher repetition rules plus ``only``."""


def repetition_signals(r: GopherRepetitionRules) -> dict[str, pa.DataType]:
    """The signal columns of one repetition config (one per configured n)."""
    names = ["gr_dup_para_frac", "gr_dup_para_char_frac", "gr_dup_line_frac", "gr_dup_line_char_frac"]
    names += [f"gr_top_{n}gram" for n in r.top_n_grams] + [f"gr_dup_{n}gram" for n in r.dup_n_grams]
    return {n: pa.float32() for n in names}


def gopher_repetition(doc: Doc, r: GopherRepetitionRules) -> RuleResult:
    text = doc.text
    n_chars = len(text)
    paragraphs = _PARAGRAPHS.split(text.strip())
    p_dups, p_chars = find_duplicates(paragraphs)
    lines = _LINES.split(text)
    l_dups, l_chars = find_duplicates(lines)
    signals: dict[str, Any] = {
        "gr_dup_para_frac": ratio(p_dups, len(paragraphs)), "gr_dup_para_char_frac": ratio(p_chars, n_chars),
        "gr_dup_line_frac": ratio(l_dups, len(lines)), "gr_dup_line_char_frac": ratio(l_chars, n_chars)}
    top: dict[int, float] = {}
    dup: dict[int, float] = {}
    words = doc.words
    if words and (r.top_n_grams or r.dup_n_grams):
        lens = np.fromiter(map(len, words), np.int64, len(words))
        if r.top_n_grams:
            for n, h, chars in word_ngram_hashes(words, lens, sorted(r.top_n_grams)):
                if len(h):
                    top[n] = ratio(top_ngram_chars(h, chars, n), n_chars)
        if r.dup_n_grams:
            for n, h, chars in joined_ngram_hashes(words, lens, sorted(r.dup_n_grams), doc.caches.powers):
                if len(h):
                    dup[n] = ratio(dup_ngram_chars(h, chars, n), n_chars)
    for n in r.top_n_grams:
        signals[f"gr_top_{n}gram"] = top.get(n, 0.0)
    for n in r.dup_n_grams:
        signals[f"gr_dup_{n}gram"] = dup.get(n, 0.0)
    reason = None
    if not text:
        reason = "empty"
    elif r.dup_para_frac and signals["gr_dup_para_frac"] > r.dup_para_frac:
        reason = "gopher_dup_para_frac"
    elif r.dup_para_char_frac and signals["gr_dup_para_char_frac"] > r.dup_para_char_frac:
        reason = "gopher_dup_para_char_frac"
    elif r.dup_line_frac and signals["gr_dup_line_frac"] > r.dup_line_frac:
        reason = "gopher_dup_line_frac"
    elif r.dup_line_char_frac and signals["gr_dup_line_char_frac"] > r.dup_line_char_frac:
        reason = "gopher_dup_line_char_frac"
    else:
        for n, frac in r.top_n_grams.items():
            if n in top and top[n] > frac:
                reason = f"gopher_top_{n}gram"
                break
        else:
            for n, frac in r.dup_n_grams.items():
                if dup.get(n, 0.0) > frac:
                    reason = f"gopher_dup_{n}gram"
                    break
    return RuleResult(reason, signals)


@register_stage
class GopherRepetition(RuleSetFilter):
    """Gopher repetition rules."""

    name = "gopher_repetition"
    Config = GopherRepetitionConfig
    rule = staticmethod(gopher_repetition)

    def declare_signals(self) -> dict[str, pa.DataType]:  # its columns depend on the configured n
        return repetition_signals(self.config)  # type: ignore[arg-type]
