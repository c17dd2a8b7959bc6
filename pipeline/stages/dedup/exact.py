"""Exact dedup: one document per normalized-text hash (xxh64 of lowercased, whitespace-collapsed NFC text)."""

from __future__ import annotations

import re

import pyarrow as pa
import xxhash
from pydantic import Field

from pipeline.stages.base import GlobalStage, StageConfig, register_stage
from pipeline.stages.dedup._groups import components_to_drops, group_edges

_WS = re.compile(r"\s+")
HASH = "_exact_hash"


class ExactDedupConfig(StageConfig):
    lowercase: bool = Field(True, description="compare case-insensitively")
    collapse_whitespace: bool = Field(True, description="treat any whitespace run as one space")


def _key(table: pa.Table) -> pa.Table:
    return table.select(["id", "_rowkey", HASH])


@register_stage
class ExactDedup(GlobalStage):
    """Drop documents whose normalized text equals an earlier one's (smallest id kept)."""

    name = "exact_dedup"
    Config = ExactDedupConfig
    key_columns = (HASH,)

    def prepare(self, table: pa.Table) -> pa.Table:
        c: ExactDedupConfig = self.config  # type: ignore[assignment]
        hashes = []
        for t in table.column("text").to_pylist():
            t = t or ""
            if c.collapse_whitespace:
                t = _WS.sub(" ", t).strip()
            if c.lowercase:
                t = t.lower()
            hashes.append(xxhash.xxh64_intdigest(t.encode("utf-8", "surrogatepass")) - (1 << 63))
        return table.append_column(HASH, pa.array(hashes, pa.int64()))

    def find_drops(self, keys: pa.Table) -> pa.Table:
        return components_to_drops(group_edges(keys, HASH), "exact_duplicate")

    def run_distributed(self, key_tables, *, num_partitions: int) -> pa.Table:
        from pipeline._ray import concat
        from pipeline._shuffle import shuffle_reduce

        edges = shuffle_reduce(key_tables, _key, HASH, _edges, num_partitions)
        return components_to_drops(concat(edges), "exact_duplicate")


def _edges(rows: pa.Table) -> pa.Table:
    return group_edges(rows, HASH) if rows.num_rows else group_edges(pa.table({}), HASH)
