"""Where a global stage's decisions live: one small Parquet file per work unit that lost rows.

A global stage (dedup) decides which rows to drop on the cluster; its tasks write the
decisions of unit 12 to ``_work/_global<k>-<j>-<stage>/u000012.parquet`` (columns
``_rowkey``, ``reject_reason``, ``dup_of``, sorted by row key). Every later reader of
unit 12 (the next map phase, the next global stage's key load, the final write) opens
only that file, so no process, the driver included, ever holds the drops of the whole
run. A unit without a file lost no rows. The driver passes around :class:`DropSet`
values: a stage name and a folder, a few bytes whatever the data size.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline._fs import OutFS
from pipeline.stages.base import REJECT_REASON, ROW_KEY, empty_drops


@dataclass(frozen=True)
class DropSet:
    """One global stage's drop decisions, stored per unit under ``_work/<folder>/``.

    Args:
        out: the run's output location.
        stage: the global stage's name (the rejected rows' ``reject_stage``).
        folder: the folder under ``_work`` holding ``u<unit index>.parquet`` files.
    """

    out: OutFS
    stage: str
    folder: str

    def _file(self, unit_index: int) -> tuple[str, str, str]:
        return ("_work", self.folder, f"u{unit_index:06d}.parquet")

    def for_unit(self, unit_index: int) -> pa.Table:
        """The drops of one unit (empty when it lost no rows)."""
        if not self.out.exists(*self._file(unit_index)):
            return empty_drops()
        return self.out.read_parquet(*self._file(unit_index))

    def write(self, unit_index: int, table: pa.Table) -> None:
        self.out.write_parquet(table, *self._file(unit_index))

    def clear(self) -> None:
        """Remove what a killed run of this phase left (a rerun rewrites the same files)."""
        self.out.rm("_work", self.folder, recursive=True)


def unit_of(keys: pa.Array | pa.ChunkedArray) -> pa.Array:
    """The unit index of row keys (``unit index << 32 | row``)."""
    return pc.shift_right(keys, 32)


def write_unit_drops(sink: DropSet, *tables: pa.Table) -> dict[str, Any]:
    """Ray task: write the drops of the units in ``tables`` (all of each unit's drops), one file per unit.

    Returns ``{"rows": n, "reasons": {reason: n}}`` for the stage's counters.
    """
    parts = [t for t in tables if t.num_rows]
    if not parts:
        return {"rows": 0, "reasons": {}}
    table = pa.concat_tables(parts).sort_by([(ROW_KEY, "ascending")])
    units = unit_of(table.column(ROW_KEY)).to_numpy()
    starts = [0, *(np.flatnonzero(np.diff(units)) + 1).tolist(), len(units)]
    for a, b in pairwise(starts):
        sink.write(int(units[a]), table.slice(a, b - a))
    reasons: dict[str, int] = {}
    for r, n in zip(*pc.value_counts(table.column(REJECT_REASON)).flatten()):
        reasons[r.as_py()] = n.as_py()
    return {"rows": table.num_rows, "reasons": dict(sorted(reasons.items()))}


def split_by_unit(drops: pa.Table, parts: int) -> list[pa.Table]:
    """``drops`` cut into ``parts`` tables by unit index (unit u goes to ``u % parts``)."""
    if not drops.num_rows:
        return [empty_drops() for _ in range(parts)]
    bucket = pc.bit_wise_and(unit_of(drops.column(ROW_KEY)), pa.scalar(0x7FFFFFFF, pa.int64()))
    bucket = pc.subtract(bucket, pc.multiply(pc.divide(bucket, pa.scalar(parts, pa.int64())),
                                             pa.scalar(parts, pa.int64())))
    return [drops.filter(pc.equal(bucket, p)) for p in range(parts)]
