"""Run one stage over a Ray Dataset in an actor pool (used by the rephrase job and benchmark).

The curate runner does the same for whole configs; this adapter exists so the
rephrase stages can run as their own Ray job and be benchmarked in isolation.
Kept and rejected rows travel together, rejected ones tagged with
``reject_stage``/``reject_reason`` (null for kept rows), and are split at the end.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from pipeline._ray import StageUDF
from pipeline.stages.base import REJECT_REASON, REJECT_STAGE, Stage


class StageActor(StageUDF):
    """A Ray Data actor holding one stage (and so one engine) for its whole life.

    The curate runner's adapter without its stats files; every batch it returns carries
    the ``reject_stage``/``reject_reason`` columns (null for kept rows), so all blocks
    of the dataset share one schema.
    """

    def __init__(self, stage: Stage):
        super().__init__(stage)

    def __call__(self, batch: pa.Table) -> pa.Table:
        out = super().__call__(batch)
        for name in (REJECT_STAGE, REJECT_REASON):
            if name not in out.column_names:
                out = out.append_column(name, pa.nulls(out.num_rows, pa.string()))
        return out


def map_stage(ds: Any, stage: Stage, **overrides: Any) -> Any:
    """``ds.map_batches`` with ``stage`` in an actor pool, using ``stage.ray_map_kwargs()``."""
    kw = {"batch_size": 64, "concurrency": 1}
    kw.update(stage.ray_map_kwargs())
    kw.update(overrides)
    return ds.map_batches(StageActor, fn_constructor_args=(stage,), batch_format="pyarrow", zero_copy_batch=True, **kw)


def split_rejected(table: pa.Table) -> tuple[pa.Table, pa.Table]:
    """Split a materialised ``map_stage`` output into (kept without reject columns, rejected)."""
    if REJECT_REASON not in table.column_names:
        return table, table.slice(0, 0)
    mask = pc.is_null(table.column(REJECT_REASON))
    kept = table.filter(mask).drop_columns([REJECT_STAGE, REJECT_REASON])
    rejected = table.filter(pc.invert(mask))
    return kept, rejected
