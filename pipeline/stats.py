"""Per-stage counters: one typed :class:`StageStats` that adds up, like DataTrove's ``PipelineStats``.

Every place that counts what a stage did builds a :class:`StageStats`: a batch
(:meth:`StageStats.of_batch`, in the map phase), a global stage's whole decision (the
dedup phase), and the manifest's per-stage entries, which are the sum of the pieces of
every unit and phase (:meth:`StageStats.merge`). :class:`UnitStats` is what one map task
writes beside a unit's rows (``_work/map<k>/<unit>/stats*.json``).

The JSON shape is the manifest's stage entry without its ``stage`` name::

    {"docs_in": 10, "docs_kept": 8, "docs_rejected": 2, "bytes_in": 5120, "bytes_out": 4096,
     "seconds": 0.01, "reasons": {"too_short": 2}}

plus ``counts`` (a stage's per-kind tallies, e.g. PII spans found) and, for a global stage,
``partitions`` and ``component_rounds`` (how the dedup decision was computed).

>>> a = StageStats.empty(docs_in=3, docs_kept=3)
>>> b = StageStats.empty(docs_in=2, docs_rejected=2, reasons={"short": 2})
>>> s = a.merge(b)
>>> (s.docs_in, s.docs_kept, s.docs_rejected, s.reasons)
(5, 3, 2, {'short': 2})
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr

from pipeline.stages.base import REJECT_REASON

__all__ = ["PREPARE_SUFFIX", "StageStats", "UnitStats", "text_bytes"]

Number = StrictFloat | StrictInt  # JSON has one number type: 3 and 3.0 are both seconds
#: per-unit stats files name a global stage's map-phase part (key columns) ``<stage>:prepare``
PREPARE_SUFFIX = ":prepare"


def text_bytes(table: pa.Table) -> int:
    """UTF-8 bytes of a table's ``text`` column (0 without one)."""
    if table.num_rows == 0 or "text" not in table.column_names:
        return 0
    return int(pc.sum(pc.binary_length(table.column("text"))).as_py() or 0)


def _add(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    out = dict(a)
    for k, n in b.items():
        out[k] = out.get(k, 0) + n
    return out


class StageStats(BaseModel):
    """One stage's counters over some rows (a batch, a unit, a whole run).

    Strict types: ``"12"`` is not a row count, so a damaged stats file is refused with the
    field named. ``docs_in = docs_kept + docs_rejected`` holds for every piece, hence for
    every sum (:meth:`problem`).
    """

    model_config = ConfigDict(extra="forbid")

    docs_in: StrictInt = Field(ge=0)
    docs_kept: StrictInt = Field(ge=0)
    docs_rejected: StrictInt = Field(ge=0)
    bytes_in: StrictInt = Field(ge=0)
    bytes_out: StrictInt = Field(ge=0)
    seconds: Number = Field(ge=0)
    reasons: dict[StrictStr, StrictInt]
    counts: dict[StrictStr, StrictInt] | None = None  # e.g. pii_email: spans found, summed
    # how a global stage decided: hash partitions and star rounds of the dedup components
    partitions: StrictInt | None = None
    component_rounds: StrictInt | None = None

    @classmethod
    def empty(cls, **counters: Any) -> StageStats:
        """All counters zero (a stage that saw no rows), but those given."""
        zero = {"docs_in": 0, "docs_kept": 0, "docs_rejected": 0, "bytes_in": 0, "bytes_out": 0, "seconds": 0.0,
                "reasons": {}}
        return cls(**{**zero, **counters})

    @classmethod
    def of_batch(cls, live_in: pa.Table, kept: pa.Table, rejected: pa.Table, seconds: float,
                 count_columns: tuple[str, ...] = ()) -> StageStats:
        """The counters of one stage call: rows and text bytes in, kept, rejected (by reason).

        Args:
            live_in: the rows the stage was given.
            kept, rejected: what it returned (``rejected`` carries ``reject_reason``).
            seconds: the call's wall time.
            count_columns: integer columns the stage adds whose sums are tallied (``counts``).
        """
        reasons: dict[str, int] = {}
        if rejected.num_rows:
            for r, n in zip(*pc.value_counts(rejected.column(REJECT_REASON)).flatten()):
                reasons[r.as_py()] = n.as_py()
        counts = None
        if count_columns:
            counts = {col: sum(int(pc.sum(t.column(col)).as_py() or 0)
                               for t in (kept, rejected) if col in t.column_names) for col in count_columns}
        return cls(docs_in=live_in.num_rows, docs_kept=kept.num_rows, docs_rejected=rejected.num_rows,
                   bytes_in=text_bytes(live_in), bytes_out=text_bytes(kept), seconds=float(seconds),
                   reasons=reasons, counts=counts)

    def merge(self, other: StageStats) -> StageStats:
        """The sum of two pieces (counters, seconds, reasons and counts added; a global stage's figures kept)."""
        counts = None if self.counts is None and other.counts is None else _add(self.counts or {}, other.counts or {})
        return self.model_copy(update={
            "docs_in": self.docs_in + other.docs_in, "docs_kept": self.docs_kept + other.docs_kept,
            "docs_rejected": self.docs_rejected + other.docs_rejected,
            "bytes_in": self.bytes_in + other.bytes_in, "bytes_out": self.bytes_out + other.bytes_out,
            "seconds": self.seconds + other.seconds, "reasons": _add(self.reasons, other.reasons), "counts": counts,
            "partitions": self.partitions if self.partitions is not None else other.partitions,
            "component_rounds": self.component_rounds if self.component_rounds is not None else other.component_rounds,
        })

    def plus_seconds(self, seconds: float) -> StageStats:
        """The same counters with ``seconds`` more (a global stage's prepare time in the map phase)."""
        return self.model_copy(update={"seconds": self.seconds + seconds})

    def ranked(self) -> StageStats:
        """The same counters with ``reasons`` ordered most frequent first (the manifest's order)."""
        return self.model_copy(update={"reasons": dict(sorted(self.reasons.items(), key=lambda x: -x[1]))})

    def problem(self) -> str | None:
        """What breaks ``docs_in = docs_kept + docs_rejected``, or ``None``."""
        if self.docs_in != self.docs_kept + self.docs_rejected:
            return f"{self.docs_in} in != {self.docs_kept} kept + {self.docs_rejected} rejected"
        return None

    def to_json(self) -> dict[str, Any]:
        """The JSON object (optional blocks left out when unset)."""
        return self.model_dump(mode="json", exclude_none=True)


@dataclass
class UnitStats:
    """What one task counted for one work unit: per stage, and the prepare time of its global stages.

    On disk (``stats*.json`` beside the unit's rows): ``{"order": [names], "stages": {name:
    StageStats, "<global stage>:prepare": {"seconds": s}}}``; the prepare part of a global stage
    only times its key columns, the global phase counts the rows.
    """

    order: list[str] = field(default_factory=list)
    stages: dict[str, StageStats] = field(default_factory=dict)
    prepare: dict[str, float] = field(default_factory=dict)

    def add(self, stage: str, stats: StageStats) -> None:
        if stage not in self.order:
            self.order.append(stage)
        have = self.stages.get(stage)
        self.stages[stage] = stats if have is None else have.merge(stats)

    def add_prepare(self, stage: str, seconds: float) -> None:
        self.prepare[stage] = self.prepare.get(stage, 0.0) + seconds

    def merge(self, other: UnitStats) -> None:
        """Add ``other``'s pieces into this one (in place)."""
        for name in other.order + [n for n in other.stages if n not in other.order]:
            self.add(name, other.stages[name])
        for name, secs in other.prepare.items():
            self.add_prepare(name, secs)

    def to_json(self) -> dict[str, Any]:
        stages: dict[str, Any] = {n: s.to_json() for n, s in self.stages.items()}
        stages.update({f"{n}{PREPARE_SUFFIX}": {"seconds": t} for n, t in self.prepare.items()})
        return {"order": list(self.order), "stages": stages}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> UnitStats:
        out = cls(order=list(data.get("order", [])))
        for name, s in data["stages"].items():
            if name.endswith(PREPARE_SUFFIX):
                out.add_prepare(name[: -len(PREPARE_SUFFIX)], s["seconds"])
            else:
                out.stages[name] = StageStats.model_validate(s)
        return out
