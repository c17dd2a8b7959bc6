"""Heuristic quality rules: Gopher quality + repetition, C4, FineWeb; every rule writes its signal.

Thresholds default to the published values:

* Gopher quality and repetition: Rae et al. 2021, "Scaling Language Models: Methods,
  Analysis & Insights from Training Gopher", section A.1.1 and Table A1
  (https://arxiv.org/abs/2112.11446).
* C4: Raffel et al. 2020, "Exploring the Limits of Transfer Learning with a Unified
  Text-to-Text Transformer", section 2.2 (https://jmlr.org/papers/v21/20-074.html), with
  the extra line rules of TensorFlow Datasets' ``c4_utils`` (long words, policy lines).
* FineWeb: Penedo et al. 2024, "The FineWeb Datasets", section 3.5 (custom filters:
  line punctuation, short lines, duplicated line characters, list-like documents)
  (https://arxiv.org/abs/2406.17557).

The rule semantics (what counts as a word, a line, a duplicate) match DataTrove's
implementations, so decisions agree with it; ``benchmarks/curation_bench.py`` measures
the agreement and the speed side by side. Speed comes from computing each document's
shared features once (words, lines, n-gram hashes) and from vectorised n-gram
statistics (NumPy) instead of string joins per n-gram.

All signals of a rule set are computed for every document (not only until the first
failing rule), so thresholds can be re-tuned from the written columns without re-running.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any, Callable, ClassVar

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from pipeline.stages.base import Filter, FilterConfig, FilterOutput, register_stage
from pipeline.stages.filters._text import (
    count_sentences,
    count_words,
    has_alpha,
    is_symbol_word,
    split_words,
    terminal_punctuation,
)

_PARAGRAPHS = re.compile(r"\n{2,}")
_LINES = re.compile(r"\n+")
_CITATION = re.compile(r"\[\d*]|\[edit]|\[citation needed]")
_C4_END = (".", "?", "!", '"', "'")
_POLICY = ("terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies", "use cookies")
_P = np.uint64(0x9E3779B97F4A7C15)


class _Rules(BaseModel):
    model_config = ConfigDict(extra="forbid")


class GopherQualityRules(_Rules):
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


class GopherRepetitionRules(_Rules):
    """Gopher repetition rules (Rae et al. 2021, Table A1)."""

    dup_line_frac: float | None = 0.3
    dup_para_frac: float | None = 0.3
    dup_line_char_frac: float | None = 0.2
    dup_para_char_frac: float | None = 0.2
    top_n_grams: dict[int, float] = Field(default_factory=lambda: {2: 0.2, 3: 0.18, 4: 0.16})
    dup_n_grams: dict[int, float] = Field(
        default_factory=lambda: {5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10})


class C4Rules(_Rules):
    """C4 rules (Raffel et al. 2020, 2.2; TFDS c4_utils). Lines failing a line rule are removed."""

    remove_citations: bool = True
    filter_no_terminal_punct: bool = True  # "only retained lines that ended in a terminal punctuation mark"
    min_num_sentences: int = 5  # "discarded any page with fewer than 5 sentences"; -1 disables
    min_words_per_line: int = 3  # "only retained lines that contained at least 3 words"
    max_word_length: int = 1000  # TFDS: drop lines with a word over 1000 chars; -1 disables
    filter_lorem_ipsum: bool = True  # "removed any page where the phrase 'lorem ipsum' appeared"
    filter_javascript: bool = True  # "removed any line with the word Javascript"
    filter_curly_bracket: bool = True  # "removed any pages that contained a curly bracket"
    filter_policy: bool = True  # TFDS: lines about cookies / terms of use
    edit_text: bool = Field(True, description="write the text with removed lines back (as C4 does)")


class FineWebRules(_Rules):
    """FineWeb custom filters (Penedo et al. 2024, 3.5)."""

    line_punct_thr: float = 0.12  # drop if < 12% of lines end with terminal punctuation
    line_punct_exclude_zero: bool = False
    short_line_thr: float = 0.67  # drop if > 67% of lines are short
    short_line_length: int = 30  # "short" = at most 30 characters
    char_duplicates_ratio: float = 0.01  # drop if > 1% of characters are in duplicated lines
    new_line_ratio: float = 0.3  # drop list-like docs: newlines / words > 0.3


class Doc:
    """One document's shared features, computed on first use.

    Args:
        text: the document.
        splitter: the word splitter (default: DataTrove's English one, ``_text.split_words``).
    """

    __slots__ = ("text", "_split", "_words", "_n_words", "_counts")

    def __init__(self, text: str, splitter: Callable[[str], list[str]] | None = None):
        self.text = text
        self._split = splitter
        self._words: list[str] | None = None
        self._n_words: int | None = None
        self._counts: Counter[str] | None = None

    @property
    def n_words(self) -> int:
        """Number of words."""
        if self._n_words is None:
            if self._words is None and self._split is None:
                self._n_words = count_words(self.text)  # English: counts without building the list
            else:
                self._n_words = len(self.words)
        return self._n_words

    @property
    def words(self) -> list[str]:
        if self._words is None:
            self._words = (self._split or split_words)(self.text)
            self._n_words = len(self._words)
        return self._words

    @property
    def counts(self) -> Counter[str]:
        """Occurrences of each distinct word."""
        if self._counts is None:
            self._counts = Counter(self.words)
        return self._counts


def _find_duplicates(items: list[str]) -> tuple[int, int]:
    """(number of items seen before, their total characters)."""
    seen: set[str] = set()
    dups = chars = 0
    for x in items:
        if x in seen:
            dups += 1
            chars += len(x)
        else:
            seen.add(x)
    return dups, chars


def _ratio(a: float, b: float) -> float:
    return a / b if b else 0.0


# --------------------------------------------------------------------------- rule sets


def gopher_quality(doc: Doc, r: GopherQualityRules) -> tuple[str | None, dict[str, Any]]:
    text, counts = doc.text, doc.counts
    n_words = doc.n_words
    # Per distinct word, weighted by its count: DataTrove's per-word sums, in fewer steps.
    n_ns = ns_chars = n_alpha = 0
    for w, k in counts.items():
        if not is_symbol_word(w):
            n_ns += k
            ns_chars += k * len(w)
        if has_alpha(w):
            n_alpha += k
    avg = (ns_chars / n_ns) if n_ns else float("nan")
    hashes = _ratio(text.count("#"), n_words)
    ellipsis = _ratio(text.count("...") + text.count("…"), n_words)
    lines = text.splitlines()
    bullets = _ratio(sum(1 for s in lines if s.lstrip().startswith(("•", "-"))), len(lines))
    end_ellipsis = _ratio(sum(1 for s in lines if s.rstrip().endswith(("...", "…"))), len(lines))
    alpha = _ratio(n_alpha, n_words)
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
    return reason, signals


def _word_ngram_hashes(words: list[str], lens: np.ndarray, ns: list[int]):
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


_Q = 0x100000001B3  # odd: invertible modulo 2**64
_QPOW = np.ones(1, np.uint64)
_QINV = np.ones(1, np.uint64)


def _powers(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Q**t and Q**-t modulo 2**64 for t < size."""
    global _QPOW, _QINV
    if len(_QPOW) < size:
        size = max(size, 2 * len(_QPOW))
        with np.errstate(over="ignore"):
            _QPOW = np.concatenate(([np.uint64(1)], np.cumprod(np.full(size - 1, _Q, np.uint64))))
            _QINV = np.concatenate(([np.uint64(1)], np.cumprod(np.full(size - 1, pow(_Q, -1, 2**64), np.uint64))))
    return _QPOW, _QINV


def _joined_ngram_hashes(words: list[str], lens: np.ndarray, ns: list[int]):
    """Yield (n, hash per n-gram, chars per n-gram) where an n-gram is its words joined
    without separator, as DataTrove's ``find_all_duplicate`` keys them ("ab"+"c" equals
    "a"+"bc"): a polynomial hash of the characters, position-independent, plus the length."""
    joined = "".join(words)
    size = len(joined)
    codes = np.frombuffer(joined.encode("utf-32-le"), "<u4").astype(np.uint64)
    qpow, qinv = _powers(size + 1)
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


def _top_ngram_chars(h: np.ndarray, chars: np.ndarray, n: int) -> int:
    """Characters covered by the most frequent n-gram (ties: the one seen first), spaces included."""
    _, first, counts = _group(h)
    best = counts.max()
    i = first[counts == best].min()
    return int(chars[i] + (n - 1)) * int(best)


def _dup_ngram_chars(h: np.ndarray, chars: np.ndarray, n: int) -> int:
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


def gopher_repetition(doc: Doc, r: GopherRepetitionRules) -> tuple[str | None, dict[str, Any]]:
    text = doc.text
    n_chars = len(text)
    paragraphs = _PARAGRAPHS.split(text.strip())
    p_dups, p_chars = _find_duplicates(paragraphs)
    lines = _LINES.split(text)
    l_dups, l_chars = _find_duplicates(lines)
    signals: dict[str, Any] = {
        "gr_dup_para_frac": _ratio(p_dups, len(paragraphs)), "gr_dup_para_char_frac": _ratio(p_chars, n_chars),
        "gr_dup_line_frac": _ratio(l_dups, len(lines)), "gr_dup_line_char_frac": _ratio(l_chars, n_chars)}
    top: dict[int, float] = {}
    dup: dict[int, float] = {}
    words = doc.words
    if words and (r.top_n_grams or r.dup_n_grams):
        lens = np.fromiter(map(len, words), np.int64, len(words))
        if r.top_n_grams:
            for n, h, chars in _word_ngram_hashes(words, lens, sorted(r.top_n_grams)):
                if len(h):
                    top[n] = _ratio(_top_ngram_chars(h, chars, n), n_chars)
        if r.dup_n_grams:
            for n, h, chars in _joined_ngram_hashes(words, lens, sorted(r.dup_n_grams)):
                if len(h):
                    dup[n] = _ratio(_dup_ngram_chars(h, chars, n), n_chars)
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
    return reason, signals


def c4(doc: Doc, r: C4Rules) -> tuple[str | None, dict[str, Any], str]:
    kept: list[str] = []
    sentences = 0
    reason = None
    lines = doc.text.splitlines()
    for line in lines:
        line = line.strip()
        words = line.split()
        if r.max_word_length != -1 and any(len(w) > r.max_word_length for w in words):
            continue
        if r.remove_citations:
            line = _CITATION.sub("", line)
        if r.filter_no_terminal_punct and (not line.endswith(_C4_END) or line.endswith("...")):
            continue
        if len(words) < r.min_words_per_line:
            continue
        low = line.lower()
        if r.filter_lorem_ipsum and "lorem ipsum" in low:
            reason = reason or "c4_lorem_ipsum"
            break
        if r.filter_javascript and "javascript" in low:
            continue
        if r.filter_curly_bracket and "{" in line:
            reason = reason or "c4_curly_bracket"
            break
        if r.filter_policy and any(p in low for p in _POLICY):
            continue
        if r.min_num_sentences != -1:
            sentences += count_sentences(line)
        kept.append(line)
    if reason is None and sentences < r.min_num_sentences:
        reason = "c4_too_few_sentences"
    signals = {"c4_lines_kept_frac": _ratio(len(kept), len(lines)), "c4_sentences": sentences}
    return reason, signals, "\n".join(kept).strip()


def fineweb(doc: Doc, r: FineWebRules, terminal: tuple[str, ...]) -> tuple[str | None, dict[str, Any]]:
    text = doc.text
    lines = [ln for ln in text.split("\n") if ln.strip() != ""]
    if not lines:
        return "fineweb_empty", {"fw_line_punct_ratio": 0.0, "fw_short_line_ratio": 0.0,
                                 "fw_char_dup_ratio": 0.0, "fw_list_ratio": 0.0}
    punct = sum(1 for ln in lines if ln.endswith(terminal)) / len(lines)
    short = sum(1 for ln in lines if len(ln) <= r.short_line_length) / len(lines)
    dup = _ratio(_find_duplicates(lines)[1], len(text) - text.count("\n"))
    n_words = doc.n_words
    lst = _ratio(text.count("\n"), n_words) if n_words else float("inf")
    signals = {"fw_line_punct_ratio": punct, "fw_short_line_ratio": short, "fw_char_dup_ratio": dup,
               "fw_list_ratio": lst}
    reason = None
    if punct < r.line_punct_thr and not (punct == 0 and r.line_punct_exclude_zero):
        reason = "fineweb_line_punct_ratio"
    elif short > r.short_line_thr:
        reason = "fineweb_short_line_ratio"
    elif dup > r.char_duplicates_ratio:
        reason = "fineweb_char_dup_ratio"
    elif lst > r.new_line_ratio:
        reason = "fineweb_list_ratio"
    return reason, signals


SIGNALS: dict[str, dict[str, pa.DataType]] = {
    "gopher_quality": {"gq_words": pa.int32(), "gq_avg_word_len": pa.float32(), "gq_hash_ratio": pa.float32(),
                       "gq_ellipsis_ratio": pa.float32(), "gq_bullet_lines": pa.float32(),
                       "gq_ellipsis_lines": pa.float32(), "gq_alpha_words": pa.float32(),
                       "gq_stop_words": pa.int32()},
    "c4": {"c4_lines_kept_frac": pa.float32(), "c4_sentences": pa.int32()},
    "fineweb": {"fw_line_punct_ratio": pa.float32(), "fw_short_line_ratio": pa.float32(),
                "fw_char_dup_ratio": pa.float32(), "fw_list_ratio": pa.float32()},
}


def _repetition_signals(r: GopherRepetitionRules) -> dict[str, pa.DataType]:
    names = ["gr_dup_para_frac", "gr_dup_para_char_frac", "gr_dup_line_frac", "gr_dup_line_char_frac"]
    names += [f"gr_top_{n}gram" for n in r.top_n_grams] + [f"gr_dup_{n}gram" for n in r.dup_n_grams]
    return {n: pa.float32() for n in names}


# --------------------------------------------------------------------------- stages


class QualityConfig(FilterConfig):
    """The four rule sets in one pass; ``null`` disables a set. Order: the order of the keys below."""

    gopher_repetition: GopherRepetitionRules | None = Field(default_factory=GopherRepetitionRules)
    gopher_quality: GopherQualityRules | None = Field(default_factory=GopherQualityRules)
    fineweb: FineWebRules | None = Field(default_factory=FineWebRules)
    c4: C4Rules | None = Field(default_factory=C4Rules)


@register_stage
class Quality(Filter):
    """Gopher repetition + Gopher quality + FineWeb + C4, sharing each document's features.

    A document is rejected with the first failing rule's reason (rule sets in config
    order; C4 last because it edits the text). Every enabled set's signals are written.
    """

    name = "quality"
    Config = QualityConfig

    def __init__(self, config: FilterConfig | None = None):
        super().__init__(config)
        c = self.config
        types: dict[str, pa.DataType] = {}
        for key in ("gopher_repetition", "gopher_quality", "fineweb", "c4"):
            rules = getattr(c, key, None)
            if rules is not None:
                types.update(_repetition_signals(rules) if key == "gopher_repetition" else SIGNALS[key])
        self.signal_types = types

    def evaluate(self, text: str) -> tuple[str | None, dict[str, Any], str | None]:
        """Reason (or None), signals and the edited text (or None) for one document."""
        c = self.config
        doc = Doc(text)
        reason: str | None = None
        signals: dict[str, Any] = {}
        new_text = None
        for key in ("gopher_repetition", "gopher_quality", "fineweb", "c4"):
            rules = getattr(c, key, None)
            if rules is None:
                continue
            if key == "gopher_repetition":
                why, sig = gopher_repetition(doc, rules)
            elif key == "gopher_quality":
                why, sig = gopher_quality(doc, rules)
            elif key == "fineweb":
                why, sig = fineweb(doc, rules, terminal_punctuation())
            else:
                why, sig, edited = c4(doc, rules)
                if rules.edit_text and why is None and reason is None:
                    new_text = edited
            signals.update(sig)
            reason = reason or why
        return reason, signals, new_text

    def keep_batch(self, table: pa.Table) -> FilterOutput:
        texts = table.column("text").to_pylist()
        reasons: list[str | None] = []
        cols: dict[str, list[Any]] = {n: [] for n in self.signal_types}
        out_text: list[str] = []
        edited = False
        for t in texts:
            reason, sig, new = self.evaluate(t or "")
            reasons.append(reason)
            for n in cols:
                cols[n].append(sig.get(n))
            if new is not None and new != t:
                edited = True
            out_text.append(t if new is None else new)
        return FilterOutput(reasons, cols, text=out_text if edited else None)


class _OneRuleSet(Quality):
    """One rule set alone: its config is the rule set's options plus ``only``."""

    key: ClassVar[str]
    rules_cls: ClassVar[type[_Rules]]

    def __init__(self, config: FilterConfig | None = None):
        config = config if config is not None else self.Config()
        rules = self.rules_cls.model_validate(config.model_dump(exclude={"only"}))
        others = {k: None for k in ("gopher_repetition", "gopher_quality", "fineweb", "c4") if k != self.key}
        super().__init__(QualityConfig(only=config.only, **{self.key: rules}, **others))
        self.stage_config = config


class GopherQualityConfig(FilterConfig, GopherQualityRules):
    """Gopher quality rules plus ``only``."""


class GopherRepetitionConfig(FilterConfig, GopherRepetitionRules):
    """Gopher repetition rules plus ``only``."""


class C4Config(FilterConfig, C4Rules):
    """C4 rules plus ``only``."""


class FineWebConfig(FilterConfig, FineWebRules):
    """FineWeb rules plus ``only``."""


@register_stage
class GopherQuality(_OneRuleSet):
    """Gopher quality rules alone."""

    name = "gopher_quality"
    Config = GopherQualityConfig
    key = "gopher_quality"
    rules_cls = GopherQualityRules


@register_stage
class GopherRepetition(_OneRuleSet):
    """Gopher repetition rules alone."""

    name = "gopher_repetition"
    Config = GopherRepetitionConfig
    key = "gopher_repetition"
    rules_cls = GopherRepetitionRules


@register_stage
class C4Quality(_OneRuleSet):
    """C4 rules alone (removes failing lines, as C4 does)."""

    name = "c4_quality"
    Config = C4Config
    key = "c4"
    rules_cls = C4Rules


@register_stage
class FineWebQuality(_OneRuleSet):
    """FineWeb's extra rules alone."""

    name = "fineweb_quality"
    Config = FineWebConfig
    key = "fineweb"
    rules_cls = FineWebRules
