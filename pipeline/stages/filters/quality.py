"""The ``quality`` stage: the English rule sets as a list, reading each document's features once.

Gopher repetition, Gopher quality, FineWeb and C4 (each its own filter class and module)
run in that order on one shared :class:`~pipeline.stages.filters._doc.Doc`, so a document
is split into words once. A document is rejected with the first failing rule set's
reason (C4 last because it edits the text); every enabled set's signals are written.
Speed against DataTrove and the agreement of the decisions: ``benchmarks/curation_bench.py``.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
from pydantic import Field

from pipeline.stages.base import FilterConfig, register_stage
from pipeline.stages.filters._doc import Doc
from pipeline.stages.filters.c4 import C4Quality, C4Rules
from pipeline.stages.filters.fineweb import FineWebQuality, FineWebRules
from pipeline.stages.filters.gopher_quality import GopherQuality, GopherQualityRules
from pipeline.stages.filters.gopher_repetition import GopherRepetition, GopherRepetitionRules
from pipeline.stages.filters.rule_set import RuleResult, Rules, RuleSetFilter

#: config key -> the filter running that rule set, in the order the stage applies them
RULE_SETS: dict[str, type[RuleSetFilter]] = {
    "gopher_repetition": GopherRepetition,
    "gopher_quality": GopherQuality,
    "fineweb": FineWebQuality,
    "c4": C4Quality,
}


class QualityConfig(FilterConfig):
    """The four rule sets in one pass; ``null`` disables a set. Order: the order of the keys below."""

    gopher_repetition: GopherRepetitionRules | None = Field(default_factory=GopherRepetitionRules)
    gopher_quality: GopherQualityRules | None = Field(default_factory=GopherQualityRules)
    fineweb: FineWebRules | None = Field(default_factory=FineWebRules)
    c4: C4Rules | None = Field(default_factory=C4Rules)


def rule_filter(cls: type[RuleSetFilter], rules: Rules) -> RuleSetFilter:
    """A rule-set filter configured with ``rules`` (no ``only``: the owning stage applies its own)."""
    return cls(cls.Config.model_validate(rules.model_dump()))


def combine(filters: list[RuleSetFilter], doc: Doc) -> RuleResult:
    """Every filter's signals; the first failing one's reason; the edited text only when kept."""
    reason: str | None = None
    signals: dict[str, Any] = {}
    text = None
    for f in filters:
        res = f.evaluate(doc)
        signals.update(res.signals)
        if res.text is not None and res.reason is None and reason is None:
            text = res.text
        reason = reason or res.reason
    return RuleResult(reason, signals, text)


@register_stage
class Quality(RuleSetFilter):
    """Gopher repetition + Gopher quality + FineWeb + C4, sharing each document's features.

    ``self.filters`` is the list of enabled rule-set filters, in order.
    """

    name = "quality"
    Config = QualityConfig

    def __init__(self, config: QualityConfig | None = None):
        c = config if config is not None else QualityConfig()
        self.filters = [rule_filter(cls, rules) for key, cls in RULE_SETS.items()
                        if (rules := getattr(c, key)) is not None]
        super().__init__(c)

    def declare_signals(self) -> dict[str, pa.DataType]:
        types: dict[str, pa.DataType] = {}
        for f in self.filters:
            types.update(f.signal_types)
        return types

    def evaluate(self, doc: Doc) -> RuleResult:
        return combine(self.filters, doc)
