"""Shared dedup logic: pick one document per group of equal keys, then per connected component.

The survivor of a cluster is always the row with the smallest ``(id, row key)``,
so the choice does not depend on partitioning, worker count or arrival order.
:func:`components_to_drops` is the one-process union-find (``GlobalStage.process``,
and the reference the distributed components in ``_components`` are tested against).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.stages.base import DUP_OF, REJECT_REASON, ROW_KEY, empty_drops

EDGE_COLUMNS = ("a_key", "a_id", "b_key", "b_id")


def group_edges(rows: pa.Table, key: str) -> pa.Table:
    """For rows sharing ``key``: edges from each non-first row to the group's first by (id, row key)."""
    if not rows.num_rows:
        return pa.table({c: pa.array([], pa.int64() if c.endswith("key") else pa.string()) for c in EDGE_COLUMNS})
    rows = rows.sort_by([(key, "ascending"), ("id", "ascending"), (ROW_KEY, "ascending")])
    k = rows.column(key).to_numpy()
    first = np.ones(len(k), dtype=bool)
    first[1:] = k[1:] != k[:-1]
    anchor = np.maximum.accumulate(np.where(first, np.arange(len(k)), 0))
    dup = ~first
    ids = rows.column("id")
    rks = rows.column(ROW_KEY)
    return pa.table({
        "a_key": pc.filter(rks, pa.array(dup)),
        "a_id": pc.filter(ids, pa.array(dup)),
        "b_key": rks.take(pa.array(anchor[dup])),
        "b_id": ids.take(pa.array(anchor[dup])),
    })


def group_drops(rows: pa.Table, key: str, reason: str) -> pa.Table:
    """Every row of a group of equal ``key`` but its smallest (id, row key) dropped, with ``dup_of`` that one.

    When each row has one key (exact dedup) a group is a whole component, so this is
    the answer without any component step.
    """
    edges = group_edges(rows, key)
    return pa.table({ROW_KEY: edges.column("a_key"),
                     REJECT_REASON: pa.array([reason] * edges.num_rows, pa.string()),
                     DUP_OF: edges.column("b_id")})


def components_to_drops(edges: pa.Table, reason: str) -> pa.Table:
    """Union-find over duplicate edges; every member but the smallest (id, row key) is dropped."""
    if not edges.num_rows:
        return empty_drops()
    a_key, b_key = edges.column("a_key").to_pylist(), edges.column("b_key").to_pylist()
    ident = dict(zip(a_key, edges.column("a_id").to_pylist()))
    ident.update(zip(b_key, edges.column("b_id").to_pylist()))
    parent: dict[int, int] = {}

    def find(x: int) -> int:
        root = x
        while parent.get(root, root) != root:
            root = parent[root]
        while parent.get(x, x) != root:
            parent[x], x = root, parent[x]
        return root

    order = lambda x: (ident[x], x)  # noqa: E731
    for a, b in zip(a_key, b_key):
        ra, rb = find(a), find(b)
        if ra != rb:
            if order(ra) < order(rb):
                parent[rb] = ra
            else:
                parent[ra] = rb
    keys, dup_of = [], []
    for x in sorted(ident):
        r = find(x)
        if r != x:
            keys.append(x)
            dup_of.append(ident[r])
    return pa.table({ROW_KEY: pa.array(keys, pa.int64()), REJECT_REASON: pa.array([reason] * len(keys), pa.string()),
                     DUP_OF: pa.array(dup_of, pa.string())})
