"""The final write on Ray: one task per work unit writes that unit's kept and rejected shards.

The driver does only O(units) work: it collects each unit's output schema (read from
Parquet footers by tasks), unifies them into one schema for all shards, starts one write
task per unit and merges the small summaries the tasks return (shard paths, sizes,
checksums, per-stage counters) into the manifest. No row passes through the driver, so
its memory does not grow with the data.

Names come from the unit: unit 12's kept rows are ``OUT/part-000012-000.parquet`` (then
``-001`` ... when a unit holds more than ``shard_bytes`` of text), its rejected rows
``OUT.curation/rejected/part-000012-000.parquet`` (the run folder, :mod:`pipeline.layout`:
kept shards are alone in ``OUT`` so that folder readers load exactly them). A unit's
shard content depends only on that unit's rows and the unified schema, so the same
data gives byte-identical shards whatever the worker count, and a write killed
half-way and rerun rewrites the same files. The trade-off: a shard never spans two units, so shards are at most one unit's
rows (``input.unit_rows``); ``shard_bytes`` only splits a unit that is larger.
"""

from __future__ import annotations

import hashlib
import io
import json
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline._fs import OutFS
from pipeline._ray import UnitLoader, concat, load_unit_rows, load_unit_stats, unit_dir
from pipeline.config import InputConfig
from pipeline.layout import REJECTED
from pipeline.read import ROW
from pipeline.stages.base import DUP_OF, REJECT_REASON, REJECT_STAGE

KEPT_BASE = ("id", "text", "source", "lang", "lang_score", "source_file", "source_line")


def public(table: pa.Table, keep_meta: bool) -> pa.Table:
    """Drop internal ``_`` columns (and the reject columns from kept rows)."""
    drop = [c for c in table.column_names if c.startswith("_")]
    if not keep_meta:
        drop += [c for c in (REJECT_STAGE, REJECT_REASON, DUP_OF) if c in table.column_names]
    return table.drop_columns(drop)


def unify(schemas: list[pa.Schema], first: tuple[str, ...]) -> pa.Schema:
    """One schema for every shard: permissive promotion, strings where types disagree."""
    fields: dict[str, pa.DataType] = {}
    for schema in schemas:
        for f in schema:
            t = fields.get(f.name)
            if t is None or pa.types.is_null(t):
                fields[f.name] = f.type
            elif t != f.type and not pa.types.is_null(f.type):
                try:
                    fields[f.name] = pa.unify_schemas([pa.schema([(f.name, t)]), pa.schema([(f.name, f.type)])],
                                                      promote_options="permissive").field(0).type
                except (pa.ArrowInvalid, pa.ArrowTypeError):
                    fields[f.name] = pa.string()
    names = [n for n in first if n in fields] + sorted(n for n in fields if n not in first)
    return pa.schema([(n, pa.string() if pa.types.is_null(fields[n]) else fields[n]) for n in names])


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    cols = []
    for f in schema:
        if f.name in table.column_names:
            col = table.column(f.name)
            if col.type != f.type:
                try:
                    col = col.cast(f.type)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                    col = pa.array([None if v is None else (v if isinstance(v, str) else json.dumps(v))
                                    for v in col.to_pylist()], pa.string())
            cols.append(col)
        else:
            cols.append(pa.nulls(table.num_rows, f.type))
    return pa.Table.from_arrays(cols, schema=schema)


def encode(table: pa.Table, fmt: str, compression: str, level: int | None) -> bytes:
    """One shard's bytes (Parquet with 8,192-row groups, or an Arrow IPC file)."""
    buf = io.BytesIO()
    if fmt == "parquet":
        import pyarrow.parquet as pq

        pq.write_table(table, buf, compression=None if compression == "none" else compression,
                       compression_level=level if compression in ("zstd", "gzip") else None, row_group_size=8192)
    else:
        import pyarrow.ipc as ipc

        opts = ipc.IpcWriteOptions(compression=None if compression in ("none", "snappy", "gzip") else compression)
        with ipc.new_file(buf, table.schema, options=opts) as w:
            w.write_table(table)
    return buf.getvalue()


def write_shard(out: OutFS, table: pa.Table, parts: list[str], fmt: str, compression: str,
                level: int | None) -> dict[str, Any]:
    data = encode(table, fmt, compression, level)
    out.write_bytes(data, *parts)
    return {"path": "/".join(parts), "rows": table.num_rows, "bytes": len(data),
            "text_bytes": int(pc.sum(pc.binary_length(table.column("text"))).as_py() or 0) if table.num_rows else 0,
            "sha256": hashlib.sha256(data).hexdigest()}


def cut(table: pa.Table, target: int) -> list[pa.Table]:
    """Consecutive pieces of at least ``target`` text bytes (the last one may be smaller)."""
    if not table.num_rows:
        return []
    sizes = pc.binary_length(table.column("text")).fill_null(0).to_numpy(zero_copy_only=False)
    ends = np.cumsum(sizes)
    pieces, start, base = [], 0, 0
    while start < table.num_rows:
        stop = int(np.searchsorted(ends, base + target, side="left")) + 1
        stop = min(max(stop, start + 1), table.num_rows)
        pieces.append(table.slice(start, stop - start))
        base = int(ends[stop - 1])
        start = stop
    return pieces


def unit_schemas(out: OutFS, unit: str, last: int) -> tuple[list[pa.Schema], list[pa.Schema]]:
    """Public schemas of a unit's committed rows, from Parquet footers only: (kept, rejected)."""
    import pyarrow.parquet as pq

    kept, rejected = [], []
    for k in range(last + 1):
        folder = unit_dir(k, unit)
        for name in out.ls(*folder):
            if name.startswith("_rows") and name.endswith(".parquet"):
                with out.fs.open(out.path(*folder, name), "rb") as f:
                    s = pq.read_schema(f)
                rejected.append(public(s.empty_table(), True).schema)
                if k == last:
                    kept.append(public(s.empty_table(), False).schema)
    return kept, rejected


def write_unit(out: OutFS, data: OutFS, input_cfg: InputConfig, unit: str, index: int, last: int,
               drops: list[Any], kept_schema: pa.Schema, rej_schema: pa.Schema,
               fmt: str, compression: str, level: int | None, shard_bytes: int) -> dict[str, Any]:
    """Ray task: load the unit's rows once per phase, write its kept and rejected shards.

    ``out`` is the run folder (work state in, rejected shards out), ``data`` the output
    folder that receives the kept shards. Returns the unit's summary: its shards (paths
    relative to ``data``), its rejected shards (relative to ``out``) and its per-stage counters.
    """
    rejected: list[pa.Table] = []
    kept = pa.table({})
    for k in range(last + 1):
        rows = load_unit_rows(out, k, unit)
        if not rows.num_rows:
            continue
        rejected.append(rows.filter(pc.is_valid(rows.column(REJECT_STAGE))))
        if k == last:
            # ``drops`` are DropSets (pipeline._drops): this task reads only this unit's drop files.
            table = UnitLoader(out, input_cfg, last + 1, drops).survivors(rows, index)
            if table.num_rows:
                if REJECT_STAGE in table.column_names:
                    dead = pc.is_valid(table.column(REJECT_STAGE))
                    rejected.append(table.filter(dead))
                    table = table.filter(pc.invert(dead))
                kept = table
    summary: dict[str, Any] = {"unit": unit, "shards": [], "rejected": [],
                               "stats": [piece for k in range(last + 1) for piece in load_unit_stats(out, k, unit)]}
    stem = f"part-{index:06d}"
    ext = "parquet" if fmt == "parquet" else "arrow"
    if kept.num_rows:
        kept = conform(public(kept.sort_by([(ROW, "ascending")]), False), kept_schema)
        for j, piece in enumerate(cut(kept, shard_bytes)):
            summary["shards"].append(write_shard(data, piece, [f"{stem}-{j:03d}.{ext}"], fmt, compression, level))
    rej = concat(rejected)
    if rej.num_rows:
        rej = conform(public(rej.sort_by([(ROW, "ascending")]), True), rej_schema)
        for j, piece in enumerate(cut(rej, shard_bytes)):
            summary["rejected"].append(write_shard(out, piece, [REJECTED, f"{stem}-{j:03d}.parquet"], "parquet",
                                                   compression, level))
    return summary
