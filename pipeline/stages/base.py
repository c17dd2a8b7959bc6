"""The stage contract every curation step follows.

A *batch stage* maps one ``pyarrow.Table`` batch to a :class:`StageResult`:
the rows it keeps (possibly with new signal columns) and the rows it rejects,
each rejected row carrying the stage name and a reason. Stages are pure over a
batch, so tests call them without Ray; the Ray runner wraps them in
``map_batches`` (actor pools for stateful stages such as model inference).

Stages register themselves by name with :func:`register_stage`, which is how a
``stages:`` list in a curate config is validated before any work starts.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict

REJECT_STAGE = "reject_stage"
REJECT_REASON = "reject_reason"


class StageConfig(BaseModel):
    """Base of every stage's config: unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid")


@dataclass
class StageResult:
    """What a batch stage returns: kept rows and rejected rows (with stage and reason)."""

    kept: pa.Table
    rejected: pa.Table


class Stage(ABC):
    """A batch stage. Subclasses set ``name`` and ``Config`` and implement ``process``.

    Args:
        config: an instance of the subclass's ``Config`` model.
    """

    name: ClassVar[str]
    Config: ClassVar[type[StageConfig]] = StageConfig

    def __init__(self, config: StageConfig | None = None):
        self.config = config if config is not None else self.Config()

    @abstractmethod
    def process(self, table: pa.Table) -> StageResult:
        """Split one batch into kept and rejected rows."""

    def __call__(self, table: pa.Table) -> StageResult:
        return self.process(table)

    def ray_map_kwargs(self) -> dict[str, Any]:
        """Extra ``Dataset.map_batches`` arguments (batch_size, concurrency, num_gpus...)."""
        return {}

    def split(self, table: pa.Table, reasons: Sequence[str | None]) -> StageResult:
        """Partition ``table`` by per-row reasons: ``None`` keeps a row, a string rejects it."""
        if len(reasons) != table.num_rows:
            raise ValueError(f"stage {self.name}: {len(reasons)} reasons for {table.num_rows} rows")
        keep = pa.array([r is None for r in reasons], type=pa.bool_())
        kept = table.filter(keep)
        rejected = table.filter(pc.invert(keep))
        rejected_reasons = [r for r in reasons if r is not None]
        rejected = rejected.append_column(REJECT_STAGE, pa.array([self.name] * len(rejected_reasons), pa.string()))
        rejected = rejected.append_column(REJECT_REASON, pa.array(rejected_reasons, pa.string()))
        return StageResult(kept=kept, rejected=rejected)


STAGES: dict[str, type[Stage]] = {}


def register_stage(cls: type[Stage]) -> type[Stage]:
    """Class decorator: make a stage available to configs under ``cls.name``."""
    if cls.name in STAGES and STAGES[cls.name] is not cls:
        raise ValueError(f"stage name {cls.name!r} registered twice")
    STAGES[cls.name] = cls
    return cls


# --------------------------------------------------------------------------- filters


class FilterConfig(StageConfig):
    """Options every filter shares.

    ``only`` restricts a filter to rows whose column holds one of the listed values
    (``{"lang": ["en"]}``, ``{"source": ["web-docs"]}``); other rows pass untouched
    and get null signal columns. ``None`` applies the filter to every row.
    """

    only: dict[str, list[str]] | None = None


@dataclass
class Verdict:
    """One document's decision: ``reason is None`` keeps it, a string drops it.

    >>> Verdict.drop("too_short", n_words=3).reason
    'too_short'
    """

    reason: str | None = None
    signals: dict[str, Any] | None = None

    @classmethod
    def keep(cls, **signals: Any) -> "Verdict":
        return cls(None, signals or None)

    @classmethod
    def drop(cls, reason: str, **signals: Any) -> "Verdict":
        return cls(reason, signals or None)


@dataclass
class FilterOutput:
    """What :meth:`Filter.keep_batch` returns for the rows it was given.

    Args:
        reasons: one entry per row, ``None`` keeps the row.
        signals: signal columns (lists or Arrow arrays, one value per row).
        text: a rewritten ``text`` column when the filter edits documents (C4 drops lines), else ``None``.
    """

    reasons: Sequence[str | None]
    signals: dict[str, Any]
    text: Sequence[str] | None = None


class Filter(Stage):
    """Base of every filter: subclasses write only ``keep(doc)`` or a vectorised ``keep_batch(table)``.

    The base applies ``config.only``, attaches the signal columns (so thresholds can be
    tuned later without re-running) and splits kept from rejected rows with their reason.
    ``signal_types`` declares the Arrow type of each signal column, so every batch gets
    the same schema even when no row produced a value.
    """

    Config: ClassVar[type[StageConfig]] = FilterConfig
    signal_types: ClassVar[dict[str, pa.DataType]] = {}
    #: columns ``keep(doc)`` reads besides ``text``
    doc_columns: ClassVar[tuple[str, ...]] = ()

    def keep(self, doc: dict[str, Any]) -> Verdict:
        """Decide one document (a dict with ``text`` and ``doc_columns``)."""
        raise NotImplementedError(f"{type(self).__name__} must implement keep() or keep_batch()")

    def keep_batch(self, table: pa.Table) -> FilterOutput:
        """Decide a batch; the default calls :meth:`keep` per row."""
        cols = {c: table.column(c).to_pylist() for c in ("text", *self.doc_columns) if c in table.column_names}
        reasons: list[str | None] = []
        signals: dict[str, list[Any]] = {name: [] for name in self.signal_types}
        for i in range(table.num_rows):
            verdict = self.keep({c: v[i] for c, v in cols.items()})
            reasons.append(verdict.reason)
            got = verdict.signals or {}
            for name in signals:
                signals[name].append(got.get(name))
        return FilterOutput(reasons, signals)

    def _applies(self, table: pa.Table) -> pa.Array | None:
        only = getattr(self.config, "only", None)
        if not only:
            return None
        mask = None
        for column, values in only.items():
            if column not in table.column_names:
                raise ValueError(f"stage {self.name}: 'only' names column {column!r}, not in {table.column_names}")
            m = pc.fill_null(pc.is_in(table.column(column), value_set=pa.array(values, pa.string())), False)
            mask = m if mask is None else pc.and_(mask, m)
        return mask.combine_chunks() if isinstance(mask, pa.ChunkedArray) else mask

    def process(self, table: pa.Table) -> StageResult:
        mask = self._applies(table)
        sub = table if mask is None else table.filter(mask)
        out = self.keep_batch(sub) if sub.num_rows else FilterOutput([], {n: [] for n in self.signal_types})
        if mask is None:
            reasons = list(out.reasons)
            signals = {n: _as_array(v, self.signal_types.get(n)) for n, v in out.signals.items()}
            text = out.text
        else:
            # Scatter the sub-batch's answers back to full-batch positions.
            positions = [i for i, m in enumerate(mask.to_pylist()) if m]
            reasons = [None] * table.num_rows
            for p, r in zip(positions, out.reasons):
                reasons[p] = r
            signals = {}
            for n, v in out.signals.items():
                full: list[Any] = [None] * table.num_rows
                for p, x in zip(positions, _as_list(v)):
                    full[p] = x
                signals[n] = _as_array(full, self.signal_types.get(n))
            text = None
            if out.text is not None:
                text = table.column("text").to_pylist()
                for p, t in zip(positions, out.text):
                    text[p] = t
        for n, arr in signals.items():
            table = _set_column(table, n, arr)
        if text is not None:
            table = _set_column(table, "text", pa.array(text, pa.string()))
        return self.split(table, reasons)


def _as_list(values: Any) -> list[Any]:
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        return values.to_pylist()
    return list(values)


def _as_array(values: Any, type_: pa.DataType | None) -> pa.Array:
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        return values if type_ is None or values.type == type_ else values.cast(type_)
    return pa.array(values if isinstance(values, list) else list(values), type=type_)


def _set_column(table: pa.Table, name: str, values: pa.Array) -> pa.Table:
    i = table.schema.get_field_index(name)
    if i >= 0:
        return table.set_column(i, name, values)
    return table.append_column(name, values)


# --------------------------------------------------------------------------- global stages

#: a unique int64 per row across the run (unit index << 32 | row ordinal); global stages name rows by it
ROW_KEY = "_rowkey"
DUP_OF = "dup_of"


class GlobalStage(Stage):
    """A stage whose decision needs every document at once (exact and fuzzy dedup).

    It runs in two parts: :meth:`prepare` adds per-document key columns during the
    parallel map phase (hashes, MinHash band keys), then :meth:`find_drops` (or
    :meth:`run_distributed`, which the runner calls with its task executor) decides over
    the key columns of all kept rows which rows to drop. The runner treats that as a
    separate, resumable phase and owns the cluster: it hands the stage the executor that
    runs its shuffle, so a stage is plain Python over tables. ``process`` applies both
    parts to one table, which is what a single-batch caller (and a unit test) wants.
    """

    #: columns :meth:`prepare` adds and :meth:`find_drops` reads (``_``-prefixed ones are not written out)
    key_columns: ClassVar[tuple[str, ...]] = ()

    def prepare(self, table: pa.Table) -> pa.Table:
        """Add the per-document key columns (runs in parallel, batch by batch)."""
        return table

    @abstractmethod
    def find_drops(self, keys: pa.Table) -> pa.Table:
        """Given ``id``, ``ROW_KEY`` and the key columns of all kept rows, return the rows to drop.

        Returns:
            a table with columns ``ROW_KEY`` (int64), ``reject_reason`` (string), ``dup_of`` (string).
        """

    def run_distributed(self, key_tables: Sequence[Any], *, tasks: Any, num_partitions: int,
                        sink: Any) -> dict[str, Any]:
        """Decide over all key tables with the runner's executor and store the drops per unit.

        Args:
            key_tables: handles of the key columns, one per unit (Ray object refs from the runner).
            tasks: a :class:`pipeline._shuffle.Tasks` executor the runner hands over (Ray tasks
                on a cluster, :class:`~pipeline._shuffle.LocalTasks` in one process); a stage
                starts its cluster work only through it and never imports ray.
            num_partitions: hash partitions for a shuffle.
            sink: a :class:`pipeline._drops.DropSet`; the drops of unit u go to ``sink.write(u, table)``.

        Returns ``{"rows": n, "reasons": {reason: n}}`` (and ``rounds``, star rounds of a
        components step). The default gathers the key tables in one place and calls
        :meth:`find_drops`; the dedup stages override it with a fully distributed version.
        """
        from pipeline._drops import write_unit_drops

        tables = tasks.get(list(key_tables))
        return write_unit_drops(sink, self.find_drops(pa.concat_tables(tables, promote_options="permissive")))

    def process(self, table: pa.Table) -> StageResult:
        table = self.prepare(table)
        keyed = table.append_column(ROW_KEY, pa.array(range(table.num_rows), pa.int64()))
        drops = self.find_drops(keyed.select(["id", ROW_KEY, *self.key_columns]))
        reasons: list[str | None] = [None] * table.num_rows
        dup_of: list[str | None] = [None] * table.num_rows
        for k, r, d in zip(drops.column(ROW_KEY).to_pylist(), drops.column(REJECT_REASON).to_pylist(),
                           drops.column(DUP_OF).to_pylist()):
            reasons[k] = r
            dup_of[k] = d
        table = _set_column(table, DUP_OF, pa.array(dup_of, pa.string()))
        return self.split(table, reasons)


def empty_drops() -> pa.Table:
    """The drops table with no rows."""
    return pa.table({ROW_KEY: pa.array([], pa.int64()), REJECT_REASON: pa.array([], pa.string()),
                     DUP_OF: pa.array([], pa.string())})
