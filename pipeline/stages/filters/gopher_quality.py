"""Gopher quality rules (Rae et al. 2021, "Scaling Language Models: Methods, Analysis &
Insights from Training Gopher", section A.1.1, https://arxiv.org/abs/2112.11446).

Words are DataTrove's (``GopherQualityFilter``): spaCy's English tokenizer by default, a
language's own splitter in ``multilingual_quality``.
"""

from __future__ import annotations

import pyarrow as pa
from pydantic import Field

from pipeline.stages.base import FilterConfig, register_stage
from pipeline.stages.filters._doc import Doc, ratio
from pipeline.stages.filters.rule_set import RuleResult, Rules, RuleSetFilter

SIGNALS: dict[str, pa.DataType] = {
    "gq_words": pa.int32(), "gq_avg_word_len": pa.float32(), "gq_hash_ratio": pa.float32(),
    "gq_ellipsis_ratio": pa.float32(), "gq_bullet_lines": pa.float32(), "gq_ellipsis_lines": pa.float32(),
    "gq_alpha_words": pa.float32(), "gq_stop_words": pa.int32()}


class GopherQualityRules(Rules):
    """Gopher quality rules (Rae et al. 2021, A.1.1); ``None`` disables a rule."""

    min_doc_words: int | None = 50  # "fewer than 50 or more than 100,000 words"
    max_doc_words: int | None = 100_000
    min_avg_word_length: float | None = 3  # "mean word length outside the range of 3 to 10 characters"
    max_avg_word_length: float | None = 10
    max_symbol_word_ratio: float | None = 0.1  # "symbol-to-word ratio greater than 0.1" (# and ellipsis)
    max_bullet_lines_ratio: float | None = 0.9  # "more than 90% of lines starting with a bullet point"
    max_ellipsis_lines_ratio: float | None = 0.3  # "more than 30% ending with an ellipsis"
    min_alpha_words_ratio: float | None = 0.8  # "80% of words ... contain at least one alphabetic character"
    min_stop_words: int | None = 2  # "at least two of: the, be, to, of, and, that, have, with"
    stop_words: list[str] = Field(default_factory=lambda: ["the", "be", "to", "of", "and", "that", "have", "with"])


class GopherQualityConfig(FilterConfig, GopherQualityRules):
    """Gopher quality rules plus ``only``."""


def gopher_quality(doc: Doc, r: GopherQualityRules) -> RuleResult:
    text, counts = doc.text, doc.counts
    words = doc.caches.words
    n_words = doc.n_words
    # Per distinct word, weighted by its count: DataTrove's per-word sums, in fewer steps.
    n_ns = ns_chars = n_alpha = 0
    for w, k in counts.items():
        if w.isalpha():  # letters only: an alpha word, and no letter is in the punctuation set
            n_ns += k
            ns_chars += k * len(w)
            n_alpha += k
            continue
        if not words.is_symbol_word(w):
            n_ns += k
            ns_chars += k * len(w)
        if words.has_alpha(w):
            n_alpha += k
    avg = (ns_chars / n_ns) if n_ns else float("nan")
    hashes = ratio(text.count("#"), n_words)
    ellipsis = ratio(text.count("...") + text.count("…"), n_words)
    lines = text.splitlines()
    bullets = ratio(sum(1 for s in lines if s.lstrip().startswith(("•", "-"))), len(lines))
    end_ellipsis = ratio(sum(1 for s in lines if s.rstrip().endswith(("...", "…"))), len(lines))
    alpha = ratio(n_alpha, n_words)
    stops = sum(1 for w in set(r.stop_words) if w in counts)
    signals = {"gq_words": n_ns, "gq_avg_word_len": avg, "gq_hash_ratio": hashes, "gq_ellipsis_ratio": ellipsis,
               "gq_bullet_lines": bullets, "gq_ellipsis_lines": end_ellipsis, "gq_alpha_words": alpha,
               "gq_stop_words": stops}
    reason = None
    if r.min_doc_words and n_ns < r.min_doc_words:
        reason = "gopher_short_doc"
    elif r.max_doc_words and n_ns > r.max_doc_words:
        reason = "gopher_long_doc"
    elif r.min_avg_word_length and avg < r.min_avg_word_length:
        reason = "gopher_avg_word_len_low"
    elif r.max_avg_word_length and avg > r.max_avg_word_length:
        reason = "gopher_avg_word_len_high"
    elif r.max_symbol_word_ratio and n_words and hashes > r.max_symbol_word_ratio:
        reason = "gopher_hash_ratio"
    elif r.max_symbol_word_ratio and n_words and ellipsis > r.max_symbol_word_ratio:
        reason = "gopher_ellipsis_ratio"
    elif r.max_bullet_lines_ratio and lines and bullets > r.max_bullet_lines_ratio:
        reason = "gopher_bullet_lines"
    elif r.max_ellipsis_lines_ratio and lines and end_ellipsis > r.max_ellipsis_lines_ratio:
        reason = "gopher_ellipsis_lines"
    elif r.min_alpha_words_ratio and n_words and alpha < r.min_alpha_words_ratio:
        reason = "gopher_alpha_words"
    elif r.min_stop_words and stops < r.min_stop_words:
        reason = "gopher_stop_words"
    return RuleResult(reason, signals)


@register_stage
class GopherQuality(RuleSetFilter):
    """Gopher quality rules."""

    name = "gopher_quality"
    Config = GopherQualityConfig
    rule = staticmethod(gopher_quality)
    signals = SIGNALS
