"""The base of the heuristic rule-set filters: decide one document from its shared features.

A rule set is a filter class with rules (a pydantic model, ``None`` disabling a rule where
the paper gives a threshold) and :meth:`RuleSetFilter.evaluate`, which reads a
:class:`~pipeline.stages.filters._doc.Doc` and returns a :class:`RuleResult`. It runs
alone as a stage, or inside the ``quality`` stage with the others, where all of them read
the same ``Doc`` (one word split per document). As in DataTrove's filters, each rule set
is one class in one module; unlike them, every signal of a set is computed for every
document (not only until the first failing rule), so thresholds can be re-tuned from the
written columns without re-running.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar, NamedTuple

import pyarrow as pa
from pydantic import BaseModel, ConfigDict

from pipeline.stages.base import Filter, FilterConfig, FilterOutput
from pipeline.stages.filters._doc import CachedStage, Doc


class Rules(BaseModel):
    """Base of a rule set's thresholds: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


class RuleResult(NamedTuple):
    """One document's outcome under a rule set."""

    reason: str | None  # None keeps the document
    signals: dict[str, Any]
    text: str | None = None  # the edited text (C4 removes lines), None: unchanged


class RuleSetFilter(CachedStage, Filter):
    """A filter made of one or more rule sets.

    A single rule set names its decision function (``rule``) and its signal columns
    (``signals``); a filter whose columns depend on its config, or that combines rule sets,
    overrides :meth:`declare_signals` / :meth:`evaluate` instead. ``self.config`` is the
    config passed (or the default one); ``signal_types`` is set per instance from it.
    """

    Config: ClassVar[type[FilterConfig]] = FilterConfig
    rule: ClassVar[Callable[[Doc, Any], RuleResult] | None] = None
    signals: ClassVar[Mapping[str, pa.DataType]] = {}

    def __init__(self, config: FilterConfig | None = None):
        super().__init__(config)
        self.signal_types = self.declare_signals()  # type: ignore[misc]

    def declare_signals(self) -> dict[str, pa.DataType]:
        """The Arrow type of every signal column this config writes."""
        return dict(self.signals)

    def evaluate(self, doc: Doc) -> RuleResult:
        """Decide one document."""
        rule = type(self).rule
        if rule is None:
            raise NotImplementedError(f"{type(self).__name__} names no rule and does not override evaluate")
        return rule(doc, self.config)

    def decide(self, text: str) -> RuleResult:
        """:meth:`evaluate` of one text."""
        return self.evaluate(Doc(text, self.caches))

    def keep_batch(self, table: pa.Table) -> FilterOutput:
        caches = self.caches
        texts = table.column("text").to_pylist()
        reasons: list[str | None] = []
        cols: dict[str, list[Any]] = {n: [] for n in self.signal_types}
        out_text: list[str] = []
        edited = False
        for t in texts:
            res = self.evaluate(Doc(t or "", caches))
            reasons.append(res.reason)
            for n, values in cols.items():
                values.append(res.signals.get(n))
            if res.text is not None and res.text != t:
                edited = True
            out_text.append(t if res.text is None else res.text)
        return FilterOutput(reasons, cols, text=out_text if edited else None)
