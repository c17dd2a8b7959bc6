"""Fuzzy dedup: MinHash signatures over word n-grams, LSH banding, connected components.

Signatures are computed per document in the parallel map phase and reduced to one
64-bit key per band; only band keys cross the cluster. Documents sharing any band key
are duplicate candidates; candidates are merged into connected components (on the
cluster, ``_components``) and the smallest ``(id, row key)`` of each component is kept.

Defaults follow DataTrove's MinHash config (5-gram shingles, 14 bands x 8 rows = 112
hashes): a pair with Jaccard similarity s becomes a candidate with probability
1 - (1 - s^8)^14, i.e. ~50% at s = 0.72, 95% at s = 0.83, 5% at s = 0.50.
Text is simplified first (lowercase, punctuation dropped, digits folded to 0) so
formatting noise does not hide a copy.

The per-document work runs compiled (``pipeline._minhash``, one call per batch); the
NumPy/Python methods ``*_reference`` below are the definition it must equal bit for bit
(``tests/pipeline/test_minhash_native.py``).
"""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import xxhash
from pydantic import Field

from pipeline import _minhash
from pipeline._shuffle import Tasks, shuffle
from pipeline.stages.base import ROW_KEY, GlobalStage, StageConfig, register_stage
from pipeline.stages.dedup._components import drops_from_edges
from pipeline.stages.dedup._groups import components_to_drops, group_edges

BANDS = "_minhash_bands"
_WORD = re.compile(r"[^\W_]+")
_DIGIT = re.compile(r"\d")


class MinHashConfig(StageConfig):
    ngram: int = Field(5, gt=0, description="words per shingle (DataTrove default 5)")
    num_bands: int = Field(14, gt=0, description="LSH bands (DataTrove default 14)")
    rows_per_band: int = Field(8, gt=0, description="hashes per band (DataTrove default 8)")
    seed: int = 1
    max_shingles: int = Field(200_000, gt=0, description="cap per document (memory bound on giant docs)")


class MinHasher:
    """Signatures of ``num_bands * rows_per_band`` 32-bit hashes; deterministic for a seed."""

    def __init__(self, cfg: MinHashConfig):
        self.cfg = cfg
        n = cfg.num_bands * cfg.rows_per_band
        rng = np.random.default_rng(cfg.seed)
        self.a = rng.integers(0, 1 << 63, size=n, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
        self.b = rng.integers(0, 1 << 63, size=n, dtype=np.uint64)
        self.pow = np.array([pow(0x100000001B3, j, 1 << 64) for j in range(cfg.ngram)], dtype=np.uint64)

    def shingles(self, text: str) -> np.ndarray:
        """Sorted distinct shingle hashes of ``text`` (uint64)."""
        return _minhash.shingles(text.lower(), self.cfg.ngram, self.cfg.max_shingles)

    def band_keys_batch(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(keys, counts): ``num_bands`` int64 keys for each text that has a word, in order,
        and each text's key count (0 for a text without words)."""
        c = self.cfg
        return _minhash.band_keys([t.lower() for t in texts], self.a, self.b, c.ngram, c.max_shingles,
                                  c.num_bands, c.rows_per_band)

    # ---- the reference the compiled path must equal

    def shingles_reference(self, text: str) -> np.ndarray:
        words = _WORD.findall(_DIGIT.sub("0", text.lower()))
        if not words:
            return np.zeros(0, dtype=np.uint64)
        h = np.fromiter(map(xxhash.xxh64_intdigest, map(str.encode, words)), dtype=np.uint64, count=len(words))
        n = self.cfg.ngram
        if len(h) < n:
            return np.array([np.bitwise_xor.reduce(h * self.pow[: len(h)])], dtype=np.uint64)
        # Polynomial combination of n consecutive word hashes (wraps mod 2^64).
        with np.errstate(over="ignore"):
            acc = np.zeros(len(h) - n + 1, dtype=np.uint64)
            for j in range(n):
                acc = acc * np.uint64(0x100000001B3) + h[j : len(h) - n + 1 + j]
        acc = np.unique(acc)
        return acc[: self.cfg.max_shingles]

    def signature_reference(self, shingles: np.ndarray) -> np.ndarray:
        # Multiply-shift hashing: (a*x + b) mod 2^64, top 32 bits; a is odd. No modulo, so fast.
        with np.errstate(over="ignore"):
            v = (shingles[:, None] * self.a[None, :] + self.b[None, :]) >> np.uint64(32)
        return v.min(axis=0).astype(np.uint32)

    def band_keys_reference(self, text: str) -> list[int]:
        sh = self.shingles_reference(text)
        if not len(sh):
            return []
        sig = self.signature_reference(sh)
        r = self.cfg.rows_per_band
        return [xxhash.xxh64_intdigest(sig[i * r : (i + 1) * r].tobytes(), seed=i) - (1 << 63)
                for i in range(self.cfg.num_bands)]


@register_stage
class MinHashDedup(GlobalStage):
    """Drop near-duplicates (MinHash LSH); one document per connected component survives."""

    name = "minhash_dedup"
    Config = MinHashConfig
    key_columns = (BANDS,)

    def __init__(self, config: MinHashConfig | None = None):
        super().__init__(config)
        self._hasher: MinHasher | None = None

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_hasher"] = None
        return state

    @property
    def hasher(self) -> MinHasher:
        if self._hasher is None:
            self._hasher = MinHasher(self.config)  # type: ignore[arg-type]
        return self._hasher

    def prepare(self, table: pa.Table) -> pa.Table:
        keys, counts = self.hasher.band_keys_batch([t or "" for t in table.column("text").to_pylist()])
        offsets = np.zeros(len(counts) + 1, dtype=np.int32)
        np.cumsum(counts, out=offsets[1:])
        bands = pa.ListArray.from_arrays(pa.array(offsets), pa.array(keys, pa.int64()))
        return table.append_column(BANDS, bands)

    def find_drops(self, keys: pa.Table) -> pa.Table:
        return components_to_drops(group_edges(_explode(keys), "_band"), "near_duplicate")

    def run_distributed(self, key_tables, *, tasks: Tasks, num_partitions: int, sink) -> dict:
        """Band keys hash-partitioned into duplicate edges, components and drops, all through ``tasks``."""
        edges = shuffle(key_tables, _explode, "_band", _edges, num_partitions, tasks=tasks)
        return drops_from_edges(tasks, [e[0] for e in edges], "near_duplicate", num_partitions, sink)


def _explode(table: pa.Table) -> pa.Table:
    """One row per (document, band key)."""
    if not table.num_rows or BANDS not in table.column_names:
        return pa.table({})
    bands = table.column(BANDS)
    parent = pc.list_parent_indices(bands)
    return pa.table({
        "_band": pc.list_flatten(bands),
        "id": table.column("id").take(parent),
        ROW_KEY: table.column(ROW_KEY).take(parent),
    })


def _edges(rows: pa.Table) -> list[pa.Table]:
    """Reducer: one partition's band groups as duplicate edges."""
    return [group_edges(rows, "_band")]
