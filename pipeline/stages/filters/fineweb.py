"""FineWeb's custom filters (Penedo et al. 2024, "The FineWeb Datasets", section 3.5,
https://arxiv.org/abs/2406.17557): line punctuation, short lines, duplicated line
characters, list-like documents; semantics of DataTrove's ``FineWebQualityFilter``.
"""

from __future__ import annotations

import pyarrow as pa

from pipeline.stages.base import FilterConfig, register_stage
from pipeline.stages.filters._doc import Doc, find_duplicates, ratio
from pipeline.stages.filters._text import terminal_punctuation
from pipeline.stages.filters.rule_set import RuleResult, Rules, RuleSetFilter

SIGNALS: dict[str, pa.DataType] = {"fw_line_punct_ratio": pa.float32(), "fw_short_line_ratio": pa.float32(),
                                   "fw_char_dup_ratio": pa.float32(), "fw_list_ratio": pa.float32()}


class FineWebRules(Rules):
    """FineWeb custom filters (Penedo et al. 2024, 3.5)."""

    line_punct_thr: float = 0.12  # drop if < 12% of lines end with terminal punctuation
    line_punct_exclude_zero: bool = False
    short_line_thr: float = 0.67  # drop if > 67% of lines are short
    short_line_length: int = 30  # "short" = at most 30 characters
    char_duplicates_ratio: float = 0.01  # drop if > 1% of characters are in duplicated lines
    new_line_ratio: float = 0.3  # drop list-like docs: newlines / words > 0.3


class FineWebConfig(FilterConfig, FineWebRules):
    """FineWeb rules plus ``only``."""


def fineweb(doc: Doc, r: FineWebRules) -> RuleResult:
    text = doc.text
    lines = [ln for ln in text.split("\n") if ln.strip() != ""]
    if not lines:
        return RuleResult("fineweb_empty", {"fw_line_punct_ratio": 0.0, "fw_short_line_ratio": 0.0,
                                            "fw_char_dup_ratio": 0.0, "fw_list_ratio": 0.0})
    terminal = terminal_punctuation()
    punct = sum(1 for ln in lines if ln.endswith(terminal)) / len(lines)
    short = sum(1 for ln in lines if len(ln) <= r.short_line_length) / len(lines)
    dup = ratio(find_duplicates(lines)[1], len(text) - text.count("\n"))
    n_words = doc.n_words
    lst = ratio(text.count("\n"), n_words) if n_words else float("inf")
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
    return RuleResult(reason, signals)


@register_stage
class FineWebQuality(RuleSetFilter):
    """FineWeb's extra rules."""

    name = "fineweb_quality"
    Config = FineWebConfig
    rule = staticmethod(fineweb)
    signals = SIGNALS
