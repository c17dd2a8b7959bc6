"""Per-language quality rules: FineWeb 2's thresholds, picked by each document's language label.

FineWeb 2 (Penedo et al. 2025, https://arxiv.org/abs/2506.20920, section 3) kept the
Gopher repetition, FineWeb and Gopher quality rules of FineWeb but re-tuned their
thresholds and stop words per language, and split words with a tokenizer made for each
language. ``fineweb2_rules.json`` holds those values (copied from the FineWeb 2
repository's ``configs/``, commit and licence recorded in the file; regenerate with
``make_fineweb2_data.py``). This stage applies them the way ``fineweb-2-pipeline.py``
does:

* Gopher repetition with the language's ``dup_line_frac``, ``top_n_grams`` and
  ``dup_n_grams``; the paragraph and line-character rules off.
* FineWeb with the language's ``line_punct_thr`` and ``new_line_ratio``, the short-line
  rule off (threshold 999) and ``char_duplicates_ratio`` 0.1 (0.01 in English FineWeb).
* Gopher quality with the language's word-length bounds, stop words (at least 2) and
  ``max_non_alpha_words_ratio``; the other rules at the Gopher values.

English (``en``) uses the English rules of the ``quality`` stage (same defaults, same
DataTrove-exact word splitter), without C4. A label with no rule set (``und``, a
language not shipped) falls back to ``fallback`` (default ``en``: what the ``quality``
stage would do), or passes untouched when ``fallback`` is null. Labels are matched as
written, then by their part before ``-``/``_`` (``zh-Hans`` -> ``zh``); FineWeb 2 names
(``deu_Latn``) work too.

A document is rejected with the first failing rule (repetition, FineWeb, Gopher quality:
FineWeb 2's order); every signal is written, plus ``mq_rules``, the rule set used.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, model_validator

from pipeline.stages.base import Filter, FilterConfig, FilterOutput, register_stage
from pipeline.stages.filters._doc import CachedStage, Doc
from pipeline.stages.filters._words import check_available
from pipeline.stages.filters.fineweb import FineWebQuality, FineWebRules
from pipeline.stages.filters.gopher_quality import GopherQuality, GopherQualityRules
from pipeline.stages.filters.gopher_repetition import GopherRepetition, GopherRepetitionRules
from pipeline.stages.filters.quality import combine, rule_filter
from pipeline.stages.filters.rule_set import RuleSetFilter

_DATA = Path(__file__).with_name("fineweb2_rules.json")


@lru_cache(1)
def fineweb2_data() -> dict[str, Any]:
    """The shipped FineWeb 2 rule data (``source`` and ``languages``)."""
    return json.loads(_DATA.read_text(encoding="utf-8"))


class LanguageRules(BaseModel):
    """One language's rule sets and word splitter."""

    model_config = ConfigDict(extra="forbid")

    splitter: tuple[str, str] = ("en", "en")  # (kind, code), see _words.py
    gopher_repetition: GopherRepetitionRules = Field(default_factory=GopherRepetitionRules)
    fineweb: FineWebRules = Field(default_factory=FineWebRules)
    gopher_quality: GopherQualityRules = Field(default_factory=GopherQualityRules)


def _from_fineweb2(entry: dict[str, Any]) -> LanguageRules:
    """Rule sets from one FineWeb 2 config, set as ``fineweb-2-pipeline.py`` sets them."""
    return LanguageRules(
        splitter=tuple(entry["splitter"]),
        gopher_repetition=GopherRepetitionRules(
            dup_para_frac=None, dup_line_char_frac=None, dup_para_char_frac=None,
            dup_line_frac=entry["dup_line_frac"],
            top_n_grams={int(n): f for n, f in entry["top_n_grams"]},
            dup_n_grams={int(n): f for n, f in entry["dup_n_grams"]}),
        fineweb=FineWebRules(short_line_thr=999, char_duplicates_ratio=0.1,
                             line_punct_thr=entry["line_punct_thr"], new_line_ratio=entry["new_line_ratio"]),
        gopher_quality=GopherQualityRules(
            min_avg_word_length=entry["min_avg_word_length"] or None,
            max_avg_word_length=entry["max_avg_word_length"] or None,
            stop_words=list(entry["stopwords"]), min_stop_words=2,
            min_alpha_words_ratio=entry["max_non_alpha_words_ratio"]))


def shipped_rules() -> dict[str, LanguageRules]:
    """Every shipped rule set by ISO 639-1 code (``en`` plus FineWeb 2's languages)."""
    out = {"en": LanguageRules()}
    for code, entry in fineweb2_data()["languages"].items():
        out[code] = _from_fineweb2(entry)
    return out


@lru_cache(1)
def _aliases() -> dict[str, str]:
    """FineWeb 2 config names (``deu_Latn``) -> ISO 639-1 code."""
    return {e["fineweb2_config"].lower(): code for code, e in fineweb2_data()["languages"].items()}


def resolve_label(label: str | None, known: set[str]) -> str | None:
    """The rule-set code for a language label, or None when no rule set matches.

    >>> resolve_label("zh-Hans", {"en", "zh"})
    'zh'
    """
    if not label:
        return None
    low = label.strip().lower()
    if low in known:
        return low
    alias = _aliases().get(low)
    if alias in known:
        return alias
    head = low.replace("_", "-").split("-", 1)[0]
    return head if head in known else None


def _merge(base: BaseModel, patch: dict[str, Any]) -> dict[str, Any]:
    out = base.model_dump()
    for k, v in patch.items():
        out[k] = _merge(getattr(base, k), v) if isinstance(v, dict) and isinstance(getattr(base, k, None),
                                                                                 BaseModel) else v
    return out


class MultilingualQualityConfig(FilterConfig):
    """Options of the ``multilingual_quality`` stage."""

    lang_column: str = Field("lang", description="column holding each document's language label")
    fallback: str | None = Field("en", description="rule set for labels without one; null keeps those documents")
    languages: list[str] | None = Field(None, description="use only these shipped rule sets (None: all)")
    overrides: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="per language: {gopher_repetition|fineweb|gopher_quality: {option: value}, splitter: [kind, code]}")

    @model_validator(mode="after")
    def _check(self) -> "MultilingualQualityConfig":
        shipped = shipped_rules()
        if self.languages is not None:
            unknown = sorted(set(self.languages) - set(shipped))
            if unknown:
                raise ValueError(f"languages: no shipped rule set for {unknown} (shipped: {', '.join(sorted(shipped))})")
        usable = set(self.languages) if self.languages is not None else set(shipped)
        usable |= set(self.overrides)
        if self.fallback is not None and self.fallback not in usable:
            raise ValueError(f"fallback: {self.fallback!r} is not a rule set here (have: {', '.join(sorted(usable))})")
        for code, patch in self.overrides.items():
            base = shipped.get(code, LanguageRules())
            try:
                LanguageRules.model_validate(_merge(base, patch))
            except Exception as e:  # pydantic's message names the option
                raise ValueError(f"overrides.{code}: {e}") from None
        return self

    def rule_sets(self) -> dict[str, LanguageRules]:
        """The rule sets this config uses, overrides applied."""
        shipped = shipped_rules()
        codes = set(self.languages) if self.languages is not None else set(shipped)
        out = {c: shipped[c] for c in codes}
        for code, patch in self.overrides.items():
            out[code] = LanguageRules.model_validate(_merge(shipped.get(code, LanguageRules()), patch))
        return out


@register_stage
class MultilingualQuality(CachedStage, Filter):
    """Gopher repetition + FineWeb + Gopher quality with FineWeb 2's per-language thresholds and word splitters."""

    name = "multilingual_quality"
    Config = MultilingualQualityConfig

    def __init__(self, config: MultilingualQualityConfig | None = None):
        super().__init__(config)
        c: MultilingualQualityConfig = self.config  # type: ignore[assignment]
        self.rules = c.rule_sets()
        for rules in self.rules.values():
            check_available(*rules.splitter)  # fail when built, not on the first such document
        self.doc_columns = (c.lang_column,)
        # Per language, its rule-set filters in FineWeb 2's order (repetition, FineWeb, Gopher quality).
        self.filters: dict[str, list[RuleSetFilter]] = {
            code: [rule_filter(GopherRepetition, rules.gopher_repetition), rule_filter(FineWebQuality, rules.fineweb),
                   rule_filter(GopherQuality, rules.gopher_quality)]
            for code, rules in self.rules.items()}
        types: dict[str, pa.DataType] = {"mq_rules": pa.string()}
        for i in range(3):  # each set's columns together, as before the split into classes
            for filters in self.filters.values():
                types.update(filters[i].signal_types)
        self.signal_types = types

    def rule_set_for(self, label: str | None) -> str | None:
        """The rule-set code a label gets (after the fallback), None: the document passes untouched."""
        code = resolve_label(label, set(self.rules))
        return code if code is not None else self.config.fallback  # type: ignore[attr-defined]

    def evaluate(self, text: str, label: str | None) -> tuple[str | None, dict[str, Any]]:
        """Reason (or None) and signals for one document with its language label."""
        code = self.rule_set_for(label)
        if code is None:
            return None, {}
        kind, split_code = self.rules[code].splitter
        caches = self.caches  # the English tables, hash powers and every language's splitter
        doc = Doc(text, caches, None if kind == "en" else caches.splitter(kind, split_code))
        res = combine(self.filters[code], doc)
        return res.reason, {"mq_rules": code, **res.signals}

    def keep_batch(self, table: pa.Table) -> FilterOutput:
        c: MultilingualQualityConfig = self.config  # type: ignore[assignment]
        if c.lang_column not in table.column_names:
            raise ValueError(f"stage {self.name}: no {c.lang_column!r} column (run langid first, or set lang_column);"
                             f" columns: {table.column_names}")
        texts = table.column("text").to_pylist()
        labels = table.column(c.lang_column).to_pylist()
        reasons: list[str | None] = []
        cols: dict[str, list[Any]] = {n: [] for n in self.signal_types}
        for text, label in zip(texts, labels):
            reason, sig = self.evaluate(text or "", label)
            reasons.append(reason)
            for n in cols:
                cols[n].append(sig.get(n))
        return FilterOutput(reasons, cols)
