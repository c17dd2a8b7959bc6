"""Connected components of the duplicate graph on the cluster, and the drops they imply.

Dedup turns groups of equal keys into duplicate edges between rows (row keys, int64).
The components are computed without gathering the edges anywhere, by alternating the
*large-star* and *small-star* operations of Kiveris et al., "Connected Components in
MapReduce and Beyond" (SoCC 2014), the algorithm text-dedup and GraphFrames use at
scale. Each operation is one layer of P tasks (Ray tasks through the runner's
executor, :class:`pipeline._shuffle.Tasks`); task p holds the edges of the nodes
that hash to p and hands every output edge to the task owning its endpoint:

* large-star: each node u links every larger neighbour to m(u), the smallest of u and
  its neighbours;
* small-star: each node u links itself and its smaller neighbours to the smallest of
  them.

Both keep the components and shrink their diameter; O(log^2 n) rounds turn every
component into a star around its smallest row key (long chains take the most rounds,
stars and pairs none). Each large-star task also reports whether its input was
already a star forest (every node either has no smaller neighbour, or exactly one
and no larger one), and the driver stops at the first round where every task says
so: it only ever sees P small counts per round.

Then the stars become decisions, still on the cluster: a *label* layer joins each
member (label = its star centre) with its document id, a *survivor* layer groups
members by label and keeps the smallest ``(id, row key)`` (the same survivor the
union-find reference :func:`pipeline.stages.dedup._groups.components_to_drops`
chooses, whatever the partitioning, worker count or arrival order), and a *write*
layer stores each unit's drops as its own file (:mod:`pipeline._drops`). The order
used inside the algorithm (row keys) does not matter for the result: components are
a property of the graph, and the survivor is chosen by ``(id, row key)`` afterwards.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from pipeline._drops import DropSet, split_by_unit, write_unit_drops
from pipeline._shuffle import Tasks
from pipeline.stages.base import DUP_OF, REJECT_REASON, ROW_KEY, empty_drops

log = logging.getLogger(__name__)

#: a safety stop; chains of a million nodes take about 30 rounds
MAX_ROUNDS = 200
_EMPTY = np.zeros((0, 2), np.int64)
_LABEL = "_label"


# --------------------------------------------------------------------------- pure helpers


def node_bucket(keys: np.ndarray, parts: int) -> np.ndarray:
    """The partition of each node: splitmix64's finalizer of the row key, scaled to ``parts``.

    Row keys are ``unit << 32 | row``, far from uniform in any bit range, so they are mixed first.
    """
    z = np.ascontiguousarray(keys, dtype=np.int64).view(np.uint64)
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (((z >> np.uint64(32)) * np.uint64(parts)) >> np.uint64(32)).astype(np.intp)


def _by_bucket(pairs: np.ndarray, parts: int) -> list[np.ndarray]:
    """``pairs`` (n x 2) cut into ``parts`` arrays by the partition of their first column."""
    if parts == 1:
        return [pairs]
    bucket = node_bucket(pairs[:, 0], parts)
    order = np.argsort(bucket, kind="stable")
    return np.split(pairs[order], np.cumsum(np.bincount(bucket, minlength=parts))[:-1])


def _unique_pairs(chunks: Sequence[np.ndarray]) -> np.ndarray:
    """Distinct rows of the stacked (n x 2) arrays, sorted by first then second column."""
    chunks = [c for c in chunks if len(c)]
    if not chunks:
        return _EMPTY
    p = np.concatenate(chunks) if len(chunks) > 1 else chunks[0]
    p = p[np.lexsort((p[:, 1], p[:, 0]))]
    keep = np.ones(len(p), dtype=bool)
    keep[1:] = (p[1:] != p[:-1]).any(axis=1)
    return p[keep]


def _groups(first_col: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For a sorted column: a mask of each run's first row, and each row's run number."""
    first = np.ones(len(first_col), dtype=bool)
    first[1:] = first_col[1:] != first_col[:-1]
    return first, np.cumsum(first) - 1


def _both_ways(pairs: np.ndarray) -> np.ndarray:
    return np.concatenate([pairs, pairs[:, ::-1]]) if len(pairs) else _EMPTY


# --------------------------------------------------------------------------- task bodies


def seed(parts: int, edges: pa.Table) -> list[Any]:
    """Edges (``a_key, a_id, b_key, b_id``) -> directed pairs for large-star, and (key, id) per node.

    Returns ``2 * parts`` results: the pair buckets, then the id buckets.
    """
    if not edges.num_rows:
        ids = pa.table({ROW_KEY: pa.array([], pa.int64()), "id": pa.array([], pa.string())})
        return [_EMPTY] * parts + [ids] * parts
    a = edges.column("a_key").to_numpy()
    b = edges.column("b_key").to_numpy()
    loop = a == b  # a document listed twice under one key links nothing
    pairs = np.stack([a[~loop], b[~loop]], axis=1)
    ids = pa.table({ROW_KEY: pa.chunked_array([edges.column("a_key"), edges.column("b_key")]).combine_chunks(),
                    "id": pa.chunked_array([edges.column("a_id"), edges.column("b_id")]).combine_chunks()})
    id_bucket = node_bucket(ids.column(ROW_KEY).to_numpy(), parts)
    id_parts = [ids.filter(pa.array(id_bucket == p)) for p in range(parts)]
    return [*_by_bucket(_both_ways(pairs), parts), *id_parts]


def large_star(parts: int, *buckets: np.ndarray) -> list[Any]:
    """One large-star task; returns ``parts`` small-star buckets and ``(violations, edges)``.

    ``violations`` counts the nodes of this partition where the input is not a star
    forest: zero everywhere means the input already is the answer.
    """
    d = _unique_pairs(buckets)  # (u, v) directed, both ways, u in this partition
    if not len(d):
        return [_EMPTY] * parts + [(0, 0)]
    u, v = d[:, 0], d[:, 1]
    first, gid = _groups(u)
    m = np.minimum(u[first], v[first])  # v is sorted within a group: v[first] is the smallest neighbour
    smaller = np.bincount(gid, weights=v < u)
    larger = np.bincount(gid, weights=v > u)
    violations = int(np.count_nonzero((smaller > 1) | ((smaller >= 1) & (larger >= 1))))
    up = v > u
    out = _unique_pairs([np.stack([v[up], m[gid[up]]], axis=1)])  # (larger node, smaller label)
    return [*_by_bucket(out, parts), (violations, len(d))]


def small_star(parts: int, *buckets: np.ndarray) -> list[np.ndarray]:
    """One small-star task over (larger, smaller) edges keyed by the larger end; returns large-star buckets."""
    d = _unique_pairs(buckets)
    if not len(d):
        return [_EMPTY] * parts
    x, n = d[:, 0], d[:, 1]
    first, gid = _groups(x)
    m = n[first]  # the smallest neighbour of each x (all neighbours are smaller than x)
    mg = m[gid]
    other = n != mg
    out = _unique_pairs([np.stack([x[first], m], axis=1), np.stack([n[other], mg[other]], axis=1)])
    return _by_bucket(_both_ways(out), parts)


def label(parts: int, n_pair_buckets: int, *buckets: Any) -> list[pa.Table]:
    """Stars plus (key, id) of this partition's nodes -> (label, key, id) keyed by label."""
    d = _unique_pairs(buckets[:n_pair_buckets])
    ids = [t for t in buckets[n_pair_buckets:] if t.num_rows]
    if not len(d):
        return [pa.table({_LABEL: pa.array([], pa.int64()), ROW_KEY: pa.array([], pa.int64()),
                          "id": pa.array([], pa.string())})] * parts
    u, v = d[:, 0], d[:, 1]
    first, _ = _groups(u)
    nodes, smallest = u[first], v[first]
    centre = np.where(smallest < nodes, smallest, nodes)  # a leaf's one smaller neighbour; a centre itself
    table = pa.concat_tables(ids).sort_by([(ROW_KEY, "ascending")])
    keys = table.column(ROW_KEY).to_numpy()
    at = np.searchsorted(keys, nodes)
    if np.any(at >= len(keys)) or np.any(keys[np.minimum(at, len(keys) - 1)] != nodes):
        raise RuntimeError("dedup components: a node of the duplicate graph has no document id")
    out = pa.table({_LABEL: pa.array(centre), ROW_KEY: pa.array(nodes), "id": table.column("id").take(pa.array(at))})
    bucket = node_bucket(centre, parts)
    return [out.filter(pa.array(bucket == p)) for p in range(parts)]


def survivors(unit_parts: int, reason: str, *tables: pa.Table) -> list[pa.Table]:
    """Members grouped by label: all but the smallest ``(id, row key)`` dropped; cut by unit."""
    tables = tuple(t for t in tables if t.num_rows)
    if not tables:
        return [empty_drops()] * unit_parts
    t = pa.concat_tables(tables).sort_by([(_LABEL, "ascending"), ("id", "ascending"), (ROW_KEY, "ascending")])
    first, gid = _groups(t.column(_LABEL).to_numpy())
    anchor = np.flatnonzero(first)[gid]
    dup = pa.array(~first)
    drops = pa.table({ROW_KEY: t.column(ROW_KEY).filter(dup),
                      REJECT_REASON: pa.array([reason] * int((~first).sum()), pa.string()),
                      DUP_OF: t.column("id").take(pa.array(anchor[~first]))})
    return split_by_unit(drops, unit_parts)


def _write(sink: DropSet, *tables: pa.Table) -> list[dict[str, Any]]:
    return [write_unit_drops(sink, *tables)]


# --------------------------------------------------------------------------- orchestration


def write_drops(tasks: Tasks, drop_parts: list[list[Any]], sink: DropSet) -> dict[str, Any]:
    """Write per-unit drop files from ``drop_parts`` (per producer, one result per unit bucket).

    Returns the stage counters: ``rows`` and ``reasons`` summed over the write tasks.
    """
    n = len(drop_parts[0]) if drop_parts else 0
    done = tasks.get([tasks.run(_write, sink, *[d[q] for d in drop_parts])[0] for q in range(n)])
    reasons: dict[str, int] = {}
    for s in done:
        for r, c in s["reasons"].items():
            reasons[r] = reasons.get(r, 0) + c
    return {"rows": sum(s["rows"] for s in done), "reasons": dict(sorted(reasons.items()))}


def star_rounds(tasks: Tasks, pair_buckets: list[list[Any]], parts: int) -> tuple[list[list[Any]], int]:
    """Alternate large-star and small-star until the graph is a star forest.

    Args:
        pair_buckets: per producer, ``parts`` references to directed pair arrays.

    Returns:
        the star forest (in the same form) and the number of rounds that changed it.
    """
    for rounds in range(MAX_ROUNDS + 1):
        ls = [tasks.run(large_star, parts, *[b[p] for b in pair_buckets], num_returns=parts + 1)
              for p in range(parts)]
        checks = tasks.get([r[parts] for r in ls])
        violations = sum(c[0] for c in checks)
        log.debug("components round %d: %d edges, %d nodes not in a star", rounds, sum(c[1] for c in checks) // 2,
                  violations)
        if not violations:
            return pair_buckets, rounds
        pair_buckets = [tasks.run(small_star, parts, *[r[p] for r in ls], num_returns=parts) for p in range(parts)]
    raise RuntimeError(f"dedup components did not converge in {MAX_ROUNDS} rounds")


def drops_from_edges(tasks: Tasks, edge_refs: list[Any], reason: str, parts: int,
                     sink: DropSet) -> dict[str, Any]:
    """Duplicate edges (references to tables, one per shuffle partition) -> per-unit drop files.

    Returns the counters (``rows``, ``reasons``) and ``rounds``, the star rounds the
    components needed. The driver only moves references and per-task counts.
    """
    seeded = [tasks.run(seed, parts, e, num_returns=2 * parts) for e in edge_refs]
    stars, rounds = star_rounds(tasks, [s[:parts] for s in seeded], parts)
    ids = [s[parts:] for s in seeded]
    labelled = [tasks.run(label, parts, len(stars), *[b[p] for b in stars], *[i[p] for i in ids], num_returns=parts)
                for p in range(parts)]
    drops = [tasks.run(survivors, parts, reason, *[lb[p] for lb in labelled], num_returns=parts)
             for p in range(parts)]
    return {**write_drops(tasks, drops, sink), "rounds": rounds}
