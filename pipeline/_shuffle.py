"""A hash shuffle on Ray tasks: map each input table to P partitions by key, reduce each partition.

Global stages use it to bring equal keys (text hashes, MinHash band keys) together
across the cluster: every map task splits its table by ``key % P`` with one vectorised
pass, and each reduce task sees all rows of its partition. The reducers' results stay
in the object store (the driver holds only their references) and feed the next
distributed step: the connected components of the duplicate graph, then the per-unit
drop files (``pipeline.stages.dedup._components``, ``pipeline._drops``).

Tasks are started through a small executor (:class:`Tasks`) that the runner hands to the
global stage: :class:`pipeline._ray.RayTasks` on a cluster, :class:`LocalTasks` in one
process, so the same code path runs under property tests that try thousands of graphs
without paying Ray's per-task cost, and no stage imports ray.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.compute as pc


def call(fn: Callable[..., Sequence[Any]], num_returns: int, *args: Any) -> Any:
    """A task body: ``fn(*args)``, checked to give ``num_returns`` results (each becomes its own object)."""
    result = fn(*args)
    if len(result) != num_returns:
        raise ValueError(f"{getattr(fn, '__name__', fn)} returned {len(result)} results, expected {num_returns}")
    return result[0] if num_returns == 1 else tuple(result)


class Tasks(Protocol):
    """How the distributed steps start work: the runner's Ray tasks, or :class:`LocalTasks` here.

    Global stages receive one from the runner and never create their own, so no stage
    imports ray (the Ray one is :class:`pipeline._ray.RayTasks`).
    """

    def run(self, fn: Callable[..., Sequence[Any]], *args: Any, num_returns: int = 1) -> list[Any]:
        """Start ``fn(*args)``, which returns ``num_returns`` results; always a list of ``num_returns`` handles."""
        ...

    def get(self, refs: list[Any]) -> list[Any]:
        """The values behind handles (tables, counters)."""
        ...


class LocalTasks:
    """Runs each call at once in this process (tests); results are the values themselves."""

    def run(self, fn: Callable[..., Sequence[Any]], *args: Any, num_returns: int = 1) -> list[Any]:
        result = call(fn, num_returns, *args)
        return list(result) if num_returns > 1 else [result]

    def get(self, refs: list[Any]) -> list[Any]:
        return list(refs)


def _split(table: pa.Table, map_fn: Callable[[pa.Table], pa.Table], key: str, parts: int) -> list[pa.Table]:
    table = map_fn(table) if table.num_rows else table
    if not table.num_rows or key not in table.column_names:
        return [pa.table({})] * parts
    bucket = pc.bit_wise_and(table.column(key), pa.scalar(0xFFFFFFFF, pa.int64()))
    bucket = pc.divide(pc.multiply(bucket, pa.scalar(parts, pa.int64())), pa.scalar(1 << 32, pa.int64()))
    return [table.filter(pc.equal(bucket, i)) for i in range(parts)]


def _reduce(reduce_fn: Callable[[pa.Table], Sequence[Any]], *tables: pa.Table) -> Sequence[Any]:
    tables = tuple(t for t in tables if t.num_rows)
    if not tables:
        return reduce_fn(pa.table({}))
    return reduce_fn(pa.concat_tables(tables, promote_options="permissive"))


def shuffle(inputs: Sequence[Any], map_fn: Callable[[pa.Table], pa.Table], key: str,
            reduce_fn: Callable[[pa.Table], Sequence[Any]], parts: int, *, tasks: Tasks,
            num_returns: int = 1) -> list[list[Any]]:
    """Start ``reduce_fn`` on each hash partition of ``map_fn(input)`` over all inputs.

    Args:
        inputs: handles of tables from ``tasks`` (Ray object refs; tables with :class:`LocalTasks`).
        map_fn: per input table, returns rows with an integer ``key`` column.
        key: the column to partition on (already a hash: its low 32 bits pick the partition).
        reduce_fn: per partition (all rows whose key falls in it), returns a sequence of
            ``num_returns`` results.
        parts: number of partitions (reduce tasks).
        tasks: the executor.

    Returns:
        per partition, the list of its ``num_returns`` result references (not fetched).
    """
    mapped = [tasks.run(_split, t, map_fn, key, parts, num_returns=parts) for t in inputs]
    return [tasks.run(_reduce, reduce_fn, *[m[p] for m in mapped], num_returns=num_returns) for p in range(parts)]
