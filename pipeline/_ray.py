"""Ray adapter: how stages run on a cluster. Stages themselves never import ray.

The map phase processes *work units*. Stages whose ``ray_map_kwargs()`` is empty are
fused into one actor per worker that reads a unit, runs them batch by batch and
commits the unit's rows (kept and rejected together) in one atomic Parquet file plus
a done marker: no data crosses processes between stages. A stage that asks for
special resources (``num_gpus``, ``concurrency``, ``batch_size``...) gets its own
``map_batches`` operator with exactly those arguments; rows then reach the unit
writer in arbitrary batches, and the driver marks a unit done once every one of its
rows has been written (counting distinct row ordinals).

Rejected rows travel with the kept ones (``reject_stage`` set) so that a unit's
output is one complete record of what happened to each input row; every stage sees
only the live rows.

Global stages (dedup) get their cluster work from here too: the runner hands
:class:`RayTasks` to ``GlobalStage.run_distributed``, which starts its shuffle and
components through it (:mod:`pipeline._shuffle`).
"""

from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from pipeline._fs import OutFS
from pipeline._shuffle import call
from pipeline.config import InputConfig
from pipeline.read import READ_STAGE, ROW, UNIT, WorkUnit, read_unit
from pipeline.stages.base import DUP_OF, REJECT_REASON, REJECT_STAGE, ROW_KEY, GlobalStage, Stage
from pipeline.stats import StageStats, UnitStats

log = logging.getLogger(__name__)

META = (REJECT_STAGE, REJECT_REASON)


def concat(tables: list[pa.Table]) -> pa.Table:
    tables = [t for t in tables if t is not None]
    if not tables:
        return pa.table({})
    return pa.concat_tables(tables, promote_options="permissive")


def row_keys(table: pa.Table) -> pa.Array:
    """``unit index << 32 | row ordinal``: a run-wide unique int64 per input row."""
    unit_idx = pc.cast(pc.utf8_slice_codeunits(table.column(UNIT), 1), pa.int64())
    return pc.add(pc.shift_left(unit_idx, 32), table.column(ROW))


class StatsCollector:
    """The :class:`~pipeline.stats.UnitStats` of each unit a task touched, filled batch by batch."""

    def __init__(self) -> None:
        self.units: dict[str, UnitStats] = defaultdict(UnitStats)

    def record(self, unit: str, stage: str, live_in: pa.Table, kept: pa.Table, rejected: pa.Table,
               seconds: float, count_columns: tuple[str, ...] = ()) -> None:
        self.units[unit].add(stage, StageStats.of_batch(live_in, kept, rejected, seconds, count_columns))

    def for_unit(self, unit: str) -> dict[str, Any]:
        """The stats file of one unit (JSON)."""
        return self.units[unit].to_json()


def _split_live(table: pa.Table) -> tuple[pa.Table, pa.Table | None]:
    if REJECT_STAGE not in table.column_names:
        return table, None
    dead_mask = pc.is_valid(table.column(REJECT_STAGE))
    live = table.filter(pc.invert(dead_mask)).drop_columns(list(META))
    dead = table.filter(dead_mask)
    return live, dead


def apply_stage(stage: Stage, table: pa.Table, stats: StatsCollector | None = None,
                prepare_only: bool = False) -> pa.Table:
    """Run ``stage`` on the live rows of ``table``; rejected rows pass through untouched."""
    live, dead = _split_live(table)
    started = time.perf_counter()
    if prepare_only:
        assert isinstance(stage, GlobalStage)
        kept, rejected = stage.prepare(live), live.slice(0, 0)
    else:
        result = stage.process(live)
        kept, rejected = result.kept, result.rejected
    seconds = time.perf_counter() - started
    if stats is not None and live.num_rows:
        if prepare_only:  # only the time counts; the global phase decides and counts rows
            for unit in pc.unique(live.column(UNIT)).to_pylist():
                share = pc.sum(pc.equal(live.column(UNIT), unit)).as_py() / live.num_rows
                stats.units[unit].add_prepare(stage.name, seconds * share)
            return concat([kept, rejected, dead])
        units = live.column(UNIT)
        for unit in pc.unique(units).to_pylist():
            share = pc.sum(pc.equal(units, unit)).as_py() / live.num_rows
            sel = lambda t: t.filter(pc.equal(t.column(UNIT), unit)) if t.num_rows else t  # noqa: E731
            stats.record(unit, stage.name, sel(live), sel(kept), sel(rejected), seconds * share,
                         tuple(getattr(stage, "count_columns", ())))
    return concat([kept, rejected, dead])


def unit_dir(phase: int, unit: str) -> tuple[str, str]:
    return (f"_work/map{phase}", unit)


class UnitLoader:
    """Loads one unit's input for a map phase: raw records (phase 0) or the previous phase's live rows.

    Rows dropped by the previous segment's global stages become rejected rows here,
    carrying the global stage's name, reason and the id of the duplicate kept. ``drops``
    are :class:`pipeline._drops.DropSet` values: each unit reads only its own drop files.
    """

    def __init__(self, out: OutFS, input_cfg: InputConfig, phase: int, drops: list[Any]):
        self.out, self.input_cfg, self.phase, self.drops = out, input_cfg, phase, drops

    def load(self, unit: WorkUnit, stats: StatsCollector) -> pa.Table:
        if self.phase == 0:
            started = time.perf_counter()
            kept, rejected = read_unit(unit, self.input_cfg)
            stats.record(unit.name, READ_STAGE, concat([kept, rejected]), kept, rejected,
                         time.perf_counter() - started)
            return concat([kept, rejected])
        return self.survivors(load_unit_rows(self.out, self.phase - 1, unit.name), unit.index)

    def survivors(self, prev: pa.Table, unit_index: int) -> pa.Table:
        """The live rows of a previous phase's unit table, those the global stages dropped now rejected."""
        live, _ = _split_live(prev)
        if DUP_OF in live.column_names:
            live = live.drop_columns([DUP_OF])
        keys = row_keys(live) if live.num_rows else pa.array([], pa.int64())
        parts = []
        for drop_set in self.drops:
            name, drops = drop_set.stage, drop_set.for_unit(unit_index)
            hit = pc.is_in(keys, value_set=drops.column(ROW_KEY))
            gone = live.filter(hit)
            if gone.num_rows:
                info = drops.filter(pc.is_in(drops.column(ROW_KEY), value_set=pc.filter(keys, hit)))
                order = {k: i for i, k in enumerate(info.column(ROW_KEY).to_pylist())}
                idx = [order[k] for k in pc.filter(keys, hit).to_pylist()]
                info = info.take(pa.array(idx, pa.int64()))
                gone = gone.append_column(REJECT_STAGE, pa.array([name] * gone.num_rows, pa.string()))
                gone = gone.append_column(REJECT_REASON, info.column(REJECT_REASON))
                gone = gone.append_column(DUP_OF, info.column(DUP_OF))
                parts.append(gone)
            live = live.filter(pc.invert(hit))
            keys = pc.filter(keys, pc.invert(hit))
        return concat([live, *parts])


def load_unit_rows(out: OutFS, phase: int, unit: str) -> pa.Table:
    """Every row (kept and rejected) a map phase committed for a unit, in input order."""
    folder = unit_dir(phase, unit)
    # "_"-prefixed names: folder readers of the output (tokenizer, datasets) skip them.
    files = [n for n in out.ls(*folder) if n.startswith("_rows") and n.endswith(".parquet")]
    table = concat([out.read_parquet(*folder, f) for f in files])
    if table.num_rows:
        table = table.sort_by([(ROW, "ascending")])
    return table


def load_unit_stats(out: OutFS, phase: int, unit: str) -> list[dict[str, Any]]:
    folder = unit_dir(phase, unit)
    return [out.read_json(*folder, n) for n in out.ls(*folder) if n.startswith("stats") and n.endswith(".json")]


class UnitWorker:
    """Actor body for the fused path: read or load a unit, run the fused stages, commit it."""

    def __init__(self, stages: list[tuple[Stage, bool]], loader: UnitLoader, batch_size: int,
                 commit: bool, compression: str, level: int | None, ledger: Any = None):
        self.stages, self.loader, self.batch_size = stages, loader, batch_size
        self.commit, self.compression, self.level = commit, compression, level
        self.ledger = ledger  # a common.units.UnitLedger: the unit's done-marker, when it commits

    def __call__(self, batch: dict[str, Any]) -> Any:
        out_rows = []
        blobs = _unit_blobs(batch)
        for blob in blobs:
            unit = WorkUnit.from_json(json.loads(blob))
            stats = StatsCollector()
            table = self.loader.load(unit, stats)
            pieces = []
            for start in range(0, max(table.num_rows, 1), self.batch_size):
                piece = table.slice(start, self.batch_size)
                for stage, prepare_only in self.stages:
                    piece = apply_stage(stage, piece, stats, prepare_only)
                pieces.append(piece)
            result = concat(pieces)
            if self.commit:
                folder = unit_dir(self.loader.phase, unit.name)
                out = self.loader.out
                out.rm(*folder, recursive=True)
                if result.num_rows:
                    result = result.sort_by([(ROW, "ascending")])
                    out.write_parquet(result, *folder, "_rows.parquet", compression=self.compression,
                                      level=self.level)
                out.write_json(stats.for_unit(unit.name), *folder, "stats.json")
                self.ledger.mark(unit.name, {"rows": unit_rows_expected(result)}, phase=f"map{self.loader.phase}")
            else:
                self.loader.out.rm(*unit_dir(self.loader.phase, unit.name), recursive=True)
                self.loader.out.write_json(stats.for_unit(unit.name), *unit_dir(self.loader.phase, unit.name),
                                           "stats-0.json")
                out_rows.append(result)
        if self.commit:
            return {"unit": [json.loads(b)["index"] for b in blobs]}
        return concat(out_rows)


class UnitActor:
    """A Ray actor around :class:`UnitWorker`: one committed unit per call, its index returned."""

    def __init__(self, kwargs: dict[str, Any]):
        self.worker = UnitWorker(**kwargs)

    def run(self, blob: str) -> int:
        return self.worker({"unit": [blob]})["unit"][0]


def run_unit_actors(kwargs: dict[str, Any], blobs: list[str], workers: int, *, label: str,
                    on_done: Any) -> None:
    """Commit every unit on ``workers`` actors, each handed its next unit as it finishes one.

    Plain Ray actors fed through ``ray.wait``, not a Ray Data pipeline: the units are
    independent and commit themselves, so the driver needs no streaming executor (its
    threads were most of the driver's CPU time, the run's serial part). One unit in flight
    per actor balances the tail best; the hand-over costs a few milliseconds against
    seconds of work per unit. A killed actor is restarted and its unit retried (a unit's
    commit is idempotent). ``on_done(index)`` runs in the driver for each finished unit.
    """
    import ray

    cls = type(label, (UnitActor,), {"__doc__": UnitActor.__doc__})
    actor = ray.remote(num_cpus=1, max_restarts=-1, max_task_retries=-1)(cls)
    shared = ray.put(kwargs)  # pickled once, not once per actor
    actors = [actor.remote(shared) for _ in range(max(1, min(workers, len(blobs))))]
    queue = list(reversed(blobs))  # pop() hands out units in plan order
    running: dict[Any, Any] = {}
    for a in actors:
        if queue:
            running[a.run.remote(queue.pop())] = a
    try:
        while running:
            ready, _ = ray.wait(list(running), num_returns=1)
            for ref in ready:
                a = running.pop(ref)
                index = ray.get(ref)
                if queue:
                    running[a.run.remote(queue.pop())] = a
                on_done(index)
    finally:
        for a in actors:
            ray.kill(a)


def _unit_blobs(batch: Any) -> list[str]:
    """The work-unit JSON strings of a batch, whether Ray handed it over as numpy or pyarrow."""
    column = batch.column("unit") if isinstance(batch, pa.Table) else batch["unit"]
    if isinstance(column, (pa.ChunkedArray, pa.Array)):
        return column.to_pylist()
    return [b.as_py() if hasattr(b, "as_py") else b for b in column]


def unit_rows_expected(table: pa.Table) -> int:
    return len(pc.unique(table.column(ROW))) if table.num_rows else 0


class StageUDF:
    """Actor/task body for a stage with its own ``ray_map_kwargs`` (e.g. a GPU model).

    The one adapter from a stage to ``map_batches``: the live rows go through the stage,
    rejected rows pass through. With ``out``, the per-unit stats of each batch are
    written beside the unit's rows (the curate runner); without, only rows come back
    (the standalone rephrase job, :mod:`pipeline.rephrase._ray`).
    """

    def __init__(self, stage: Stage, out: OutFS | None = None, phase: int = 0):
        self.stage, self.out, self.phase = stage, out, phase

    def __call__(self, table: pa.Table) -> pa.Table:
        if self.out is None:
            return apply_stage(self.stage, table)
        stats = StatsCollector()
        result = apply_stage(self.stage, table, stats)
        if table.num_rows:
            first = int(pc.min(table.column(ROW)).as_py())
            for unit in stats.units:
                self.out.write_json(stats.for_unit(unit), *unit_dir(self.phase, unit),
                                    f"stats-{self.stage.name}-{first:09d}.json")
        return result


class RayTasks:
    """The :class:`pipeline._shuffle.Tasks` executor on the cluster: each call is a Ray task (1 CPU).

    The runner makes one and hands it to a global stage's ``run_distributed``, so the stage
    starts cluster work without importing ray. A task function returns a sequence of exactly
    ``num_returns`` results, each of which becomes its own object (so a reducer fetches only
    its own partition); the results stay in the object store, the caller holds references.
    """

    def __init__(self) -> None:
        import ray

        self._ray = ray
        self._remote: dict[int, Any] = {}

    def run(self, fn: Any, *args: Any, num_returns: int = 1) -> list[Any]:
        """Start ``fn(*args)``; always a list of ``num_returns`` references."""
        remote = self._remote.get(num_returns)
        if remote is None:
            remote = self._ray.remote(num_cpus=1)(call).options(num_returns=num_returns)
            self._remote[num_returns] = remote
        refs = remote.remote(fn, num_returns, *args)
        return list(refs) if num_returns > 1 else [refs]

    def get(self, refs: list[Any]) -> list[Any]:
        return self._ray.get(list(refs))


class PartWriter:
    """Task body ending the general path: commit each unit's rows of this batch as one part."""

    def __init__(self, out: OutFS, phase: int, compression: str, level: int | None):
        self.out, self.phase, self.compression, self.level = out, phase, compression, level

    def __call__(self, table: pa.Table) -> pa.Table:
        units, rows = [], []
        if table.num_rows:
            for unit in pc.unique(table.column(UNIT)).to_pylist():
                part = table.filter(pc.equal(table.column(UNIT), unit)).sort_by([(ROW, "ascending")])
                first = int(part.column(ROW)[0].as_py())
                self.out.write_parquet(part, *unit_dir(self.phase, unit), f"_rows-{first:09d}.parquet",
                                       compression=self.compression, level=self.level)
                units.append(unit)
                rows.append(unit_rows_expected(part))
        return pa.table({"unit": pa.array(units, pa.string()), "rows": pa.array(rows, pa.int64())})
