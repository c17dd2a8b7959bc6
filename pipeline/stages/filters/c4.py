"""C4 rules (Raffel et al. 2020, "Exploring the Limits of Transfer Learning with a Unified
Text-to-Text Transformer", section 2.2, https://jmlr.org/papers/v21/20-074.html), with the
extra line rules of TensorFlow Datasets' ``c4_utils`` (long words, policy lines).

Lines failing a line rule are removed, as C4 does (``edit_text``); a page rule (lorem
ipsum, curly bracket, too few sentences) drops the document. Semantics of DataTrove's
``C4QualityFilter``.
"""

from __future__ import annotations

import re

import pyarrow as pa
from pydantic import Field

from pipeline.stages.base import FilterConfig, register_stage
from pipeline.stages.filters._doc import Doc, ratio
from pipeline.stages.filters.rule_set import RuleResult, Rules, RuleSetFilter

_CITATION = re.compile(r"\[\d*]|\[edit]|\[citation needed]")
_END = (".", "?", "!", '"', "'")
_POLICY = ("terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies", "use cookies")
_POLICY_SEARCH = re.compile("|".join(map(re.escape, _POLICY))).search  # any of them, in one scan

SIGNALS: dict[str, pa.DataType] = {"c4_lines_kept_frac": pa.float32(), "c4_sentences": pa.int32()}


class C4Rules(Rules):
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


class C4Config(FilterConfig, C4Rules):
    """C4 rules plus ``only``."""


def c4(doc: Doc, r: C4Rules) -> RuleResult:
    """Reason, signals, and the kept lines as text when ``edit_text`` and the document is kept (else None)."""
    count_sentences = doc.caches.words.count_sentences
    kept: list[str] = []
    sentences = 0
    reason = None
    lines = doc.text.splitlines()
    for line in lines:
        line = line.strip()
        words = line.split()
        long_line = r.max_word_length != -1 and len(line) > r.max_word_length  # else no word can be too long
        if long_line and any(len(w) > r.max_word_length for w in words):
            continue
        if r.remove_citations and "[" in line:  # every citation pattern starts with "["
            line = _CITATION.sub("", line)
        if r.filter_no_terminal_punct and (not line.endswith(_END) or line.endswith("...")):
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
        if r.filter_policy and _POLICY_SEARCH(low):
            continue
        if r.min_num_sentences != -1:
            sentences += count_sentences(line)
        kept.append(line)
    if reason is None and sentences < r.min_num_sentences:
        reason = "c4_too_few_sentences"
    signals = {"c4_lines_kept_frac": ratio(len(kept), len(lines)), "c4_sentences": sentences}
    # a rejected document keeps its text as it came (the rejected rows show what was judged)
    return RuleResult(reason, signals, "\n".join(kept).strip() if r.edit_text and reason is None else None)


@register_stage
class C4Quality(RuleSetFilter):
    """C4 rules (removes failing lines, as C4 does)."""

    name = "c4_quality"
    Config = C4Config
    rule = staticmethod(c4)
    signals = SIGNALS
