"""A hash shuffle on Ray tasks: map each input table to P partitions by key, reduce each partition.

Global stages use it to bring equal keys (text hashes, MinHash band keys) together
across the cluster: every map task splits its table by ``key % P`` with one vectorised
pass, and each reduce task sees all rows of its partition. Reducers return small
tables (the duplicate candidates), which the driver combines.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import pyarrow as pa
import pyarrow.compute as pc


def _split(table: pa.Table, map_fn: Callable[[pa.Table], pa.Table], key: str, parts: int) -> list[pa.Table]:
    table = map_fn(table) if table.num_rows else table
    if not table.num_rows or key not in table.column_names:
        return [pa.table({})] * parts
    bucket = pc.bit_wise_and(table.column(key), pa.scalar(0xFFFFFFFF, pa.int64()))
    bucket = pc.divide(pc.multiply(bucket, pa.scalar(parts, pa.int64())), pa.scalar(1 << 32, pa.int64()))
    return [table.filter(pc.equal(bucket, i)) for i in range(parts)]


def _reduce(reduce_fn: Callable[[pa.Table], pa.Table], *tables: pa.Table) -> pa.Table:
    tables = tuple(t for t in tables if t.num_rows)
    if not tables:
        return reduce_fn(pa.table({}))
    return reduce_fn(pa.concat_tables(tables, promote_options="permissive"))


def shuffle_reduce(inputs: Sequence[Any], map_fn: Callable[[pa.Table], pa.Table], key: str,
                   reduce_fn: Callable[[pa.Table], pa.Table], parts: int) -> list[pa.Table]:
    """Run ``reduce_fn`` on each hash partition of ``map_fn(input)`` over all inputs.

    Args:
        inputs: Ray object refs of tables (or tables).
        map_fn: per input table, returns rows with an integer ``key`` column.
        key: the column to partition on.
        reduce_fn: per partition (all rows whose key falls in it), returns a result table.
        parts: number of partitions (reduce tasks).
    """
    import ray

    split = ray.remote(num_cpus=1)(_split).options(num_returns=parts)
    reduce = ray.remote(num_cpus=1)(_reduce)
    mapped = [split.remote(t, map_fn, key, parts) for t in inputs]
    if parts == 1:
        mapped = [[m] for m in mapped]
    results = [reduce.remote(reduce_fn, *[m[p] for m in mapped]) for p in range(parts)]
    return ray.get(results)
