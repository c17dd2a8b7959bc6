"""Benchmark decontamination: reject documents sharing an n-gram (13 words by default) with an eval set.

The eval sets are files (JSONL, optionally compressed, or Parquet; local or any fsspec
URI). When the stage is built (before any work), every eval passage is normalized and
cut into word n-grams; their 64-bit hashes go into one sorted NumPy array, the exact hash
set (8 bytes per distinct n-gram, with the index of the eval set that has it), which
ships to every Ray worker with the stage. A document is rejected when at least
``min_hits`` of its n-grams are in the set; the rejected row keeps the eval set's name
(``decontam_set``), the first matching n-gram (``decontam_ngram``, normalized words) and
the number of matching n-grams (``decontam_hits``).

Normalization (``normalize_tokens``): NFKC, case folded, then words are runs of letters
and digits; every other character (whitespace, line breaks, punctuation, symbols) only
separates words, and each CJK ideograph or kana is a word of its own (those scripts
write no spaces). So a passage re-wrapped, re-spaced or re-punctuated yields the same
n-grams; a naive substring matcher finds none of those copies. Not covered: words split
by a hyphen at a line break (``contami-\\nnation``), paraphrases, translations.

Why exact hashes, not a Bloom filter: an exact set has no false positives beyond 64-bit
hash collisions (about n^2 / 2^65), and eval sets are small (MMLU, GSM8K, HumanEval
together are a few million n-grams, tens of MB). Passages shorter than ``ngram`` words
cannot be matched and are counted in ``short_passages`` (logged when the index is built).
"""

from __future__ import annotations

import io
import json
import logging
import re
import unicodedata
from pathlib import PurePosixPath
from typing import Any, Iterator, Literal

import numpy as np
import pyarrow as pa
import xxhash
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pipeline.errors import ConfigError
from pipeline.stages.base import Filter, FilterConfig, FilterOutput, register_stage

log = logging.getLogger(__name__)

_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_TOKEN = re.compile(f"[{_CJK}]|[^\\W_{_CJK}]+")
_P = np.uint64(0x9E3779B97F4A7C15)


def normalize_tokens(text: str) -> list[str]:
    """The words n-grams are made of (see the module docstring).

    >>> normalize_tokens("The quick-brown\\nFOX, jumps!")
    ['the', 'quick', 'brown', 'fox', 'jumps']
    """
    return _TOKEN.findall(unicodedata.normalize("NFKC", text).casefold())


def ngram_hashes(tokens: list[str], n: int) -> np.ndarray:
    """64-bit hashes of every run of ``n`` consecutive tokens (empty when fewer tokens)."""
    if len(tokens) < n:
        return np.empty(0, np.uint64)
    ids = np.fromiter((xxhash.xxh3_64_intdigest(t.encode()) for t in tokens), np.uint64, len(tokens))
    m = len(tokens) - n + 1
    h = ids[:m].copy()
    with np.errstate(over="ignore"):
        for k in range(1, n):
            h = h * _P + ids[k:k + m]
    return h


class EvalSet(BaseModel):
    """One evaluation set: files and the fields holding its text."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, description="reported in decontam_set (default: the first path's stem, "
                                                 "or its folder's name for a glob)")
    paths: list[str] = Field(min_length=1, description="files or globs, local or any fsspec URI")
    fields: list[str] = Field(default_factory=lambda: ["text"],
                              description="fields joined into one passage per record (strings or lists of strings)")
    format: Literal["auto", "jsonl", "parquet"] = "auto"
    storage_options: dict[str, Any] = Field(default_factory=dict)

    def label(self) -> str:
        if self.name:
            return self.name
        path = PurePosixPath(self.paths[0].split("://", 1)[-1])
        stem = path.name if not any(ch in path.name for ch in "*?[") else path.parent.name  # a glob: its folder
        for suffix in (".zst", ".gz", ".bz2", ".xz", ".jsonl", ".json", ".parquet", ".pq"):
            stem = stem.removesuffix(suffix)
        return stem


class DecontaminateConfig(FilterConfig):
    """Options of the ``decontaminate`` stage."""

    eval_sets: list[EvalSet] = Field(min_length=1)
    ngram: int = Field(13, ge=3, le=64, description="words per n-gram (13: GPT-3's decontamination)")
    min_hits: int = Field(1, ge=1, description="matching n-grams needed to reject a document")

    @field_validator("eval_sets", mode="before")
    @classmethod
    def _shorthand(cls, v: Any) -> Any:
        """A plain path string stands for ``{paths: [path]}``."""
        if isinstance(v, list):
            return [{"paths": [x]} if isinstance(x, str) else x for x in v]
        return v

    @model_validator(mode="after")
    def _unique_names(self) -> "DecontaminateConfig":
        names = [e.label() for e in self.eval_sets]
        if len(set(names)) != len(names):
            raise ValueError(f"eval_sets: names must be unique, got {names} (set `name`)")
        for spec in self.eval_sets:  # missing files are a config error, reported before any work
            try:
                _expand(spec)
            except ConfigError as e:
                raise ValueError(str(e).removeprefix("decontaminate: ")) from None
        return self


def _expand(spec: EvalSet) -> list[tuple[Any, str]]:
    import fsspec

    files: list[tuple[Any, str]] = []
    for p in spec.paths:
        fs, _, found = fsspec.get_fs_token_paths(p, storage_options=spec.storage_options)
        found = [f for f in found if fs.isfile(f)]
        if not found:
            raise ConfigError(f"decontaminate: eval set {spec.label()!r}: no file matches {p!r}")
        files += [(fs, f) for f in sorted(found)]
    return files


def _format(spec: EvalSet, path: str) -> str:
    if spec.format != "auto":
        return spec.format
    name = path.lower()
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    if re.search(r"\.jsonl?(\.(gz|zst|zstd|bz2|xz))?$", name):
        return "jsonl"
    raise ConfigError(f"decontaminate: {path}: cannot tell the format from the name (set format: jsonl|parquet)")


def _passage(record: dict[str, Any], fields: list[str]) -> str | None:
    parts: list[str] = []
    for f in fields:
        v = record.get(f)
        if isinstance(v, str):
            parts.append(v)
        elif isinstance(v, list):
            parts += [x for x in v if isinstance(x, str)]
    return "\n".join(parts) if parts else None


def read_passages(spec: EvalSet) -> Iterator[tuple[str, int, str]]:
    """(file, record number, passage) for every record of an eval set; bad records raise ConfigError."""
    for fs, path in _expand(spec):
        fmt = _format(spec, path)
        found = 0
        if fmt == "parquet":
            import pyarrow.parquet as pq

            with fs.open(path, "rb") as f:
                table = pq.read_table(f)
            missing = [c for c in spec.fields if c not in table.column_names]
            if len(missing) == len(spec.fields):
                raise ConfigError(f"decontaminate: {path}: none of the fields {spec.fields} in columns "
                                  f"{table.column_names}")
            for i, rec in enumerate(table.select([c for c in spec.fields if c in table.column_names]).to_pylist()):
                text = _passage(rec, spec.fields)
                if text:
                    found += 1
                    yield path, i, text
        else:
            with fs.open(path, "rb", compression="infer") as raw:
                for i, line in enumerate(io.TextIOWrapper(raw, encoding="utf-8", errors="strict"), 1):
                    if not line.strip():
                        continue
                    try:
                        rec = json.loads(line)
                    except json.JSONDecodeError as e:
                        raise ConfigError(f"decontaminate: {path}:{i}: not JSON ({e.msg})") from None
                    text = _passage(rec, spec.fields) if isinstance(rec, dict) else None
                    if text:
                        found += 1
                        yield path, i, text
        if not found:
            raise ConfigError(f"decontaminate: {path}: no record has a text in {spec.fields}")


class NgramIndex:
    """The exact hash set: sorted unique n-gram hashes and the eval set each came from first."""

    def __init__(self, hashes: np.ndarray, sets: np.ndarray, names: list[str], stats: dict[str, dict[str, int]]):
        self.hashes, self.sets, self.names, self.stats = hashes, sets, names, stats

    @classmethod
    def build(cls, specs: list[EvalSet], n: int) -> "NgramIndex":
        chunks: list[np.ndarray] = []
        owners: list[np.ndarray] = []
        stats: dict[str, dict[str, int]] = {}
        for k, spec in enumerate(specs):
            s = stats[spec.label()] = {"passages": 0, "short_passages": 0, "ngrams": 0}
            for _, _, text in read_passages(spec):
                h = ngram_hashes(normalize_tokens(text), n)
                s["passages"] += 1
                if not len(h):
                    s["short_passages"] += 1
                    continue
                s["ngrams"] += len(h)
                chunks.append(h)
                owners.append(np.full(len(h), k, np.uint16))
        if not chunks:
            raise ConfigError(f"decontaminate: no eval passage has {n}+ words (stats: {stats})")
        allh = np.concatenate(chunks)
        allk = np.concatenate(owners)
        order = np.argsort(allh, kind="stable")  # stable: a shared n-gram keeps its first eval set
        allh, allk = allh[order], allk[order]
        first = np.ones(len(allh), bool)
        first[1:] = allh[1:] != allh[:-1]
        log.info("decontaminate: %d distinct %d-grams from %s", int(first.sum()), n, stats)
        return cls(allh[first], allk[first], [s.label() for s in specs], stats)

    def lookup(self, h: np.ndarray) -> np.ndarray:
        """Index into ``self.hashes`` per query hash, -1 where absent."""
        pos = np.searchsorted(self.hashes, h)
        pos = np.minimum(pos, len(self.hashes) - 1)
        return np.where(self.hashes[pos] == h, pos, -1)


@register_stage
class Decontaminate(Filter):
    """Reject documents that share ``ngram``-word sequences with an evaluation set."""

    name = "decontaminate"
    Config = DecontaminateConfig
    signal_types = {"decontam_set": pa.string(), "decontam_ngram": pa.string(), "decontam_hits": pa.int32()}

    def __init__(self, config: DecontaminateConfig | None = None):
        if config is None:
            raise ConfigError("decontaminate: eval_sets is required")
        super().__init__(config)
        c: DecontaminateConfig = self.config  # type: ignore[assignment]
        self.index = NgramIndex.build(c.eval_sets, c.ngram)

    def check(self, text: str) -> tuple[str | None, dict[str, Any]]:
        """Reason (``contaminated:<set>``) or None, and the signals, for one document."""
        c: DecontaminateConfig = self.config  # type: ignore[assignment]
        tokens = normalize_tokens(text)
        h = ngram_hashes(tokens, c.ngram)
        if not len(h):
            return None, {"decontam_hits": 0}
        found = self.index.lookup(h)
        hit = np.flatnonzero(found >= 0)
        if len(hit) < c.min_hits:
            return None, {"decontam_hits": int(len(hit))}
        i = int(hit[0])
        name = self.index.names[int(self.index.sets[found[i]])]
        return f"contaminated:{name}", {"decontam_set": name, "decontam_ngram": " ".join(tokens[i:i + c.ngram]),
                                         "decontam_hits": int(len(hit))}

    def keep_batch(self, table: pa.Table) -> FilterOutput:
        reasons: list[str | None] = []
        cols: dict[str, list[Any]] = {n: [] for n in self.signal_types}
        for text in table.column("text").to_pylist():
            reason, sig = self.check(text or "")
            reasons.append(reason)
            for n in cols:
                cols[n].append(sig.get(n))
        return FilterOutput(reasons, cols)
