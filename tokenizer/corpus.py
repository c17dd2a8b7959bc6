"""Reading training text: shards of any supported format, sampled and split.

A document is identified by its id (or, without one, its text); a seeded hash of
that identity decides both the held-out split and the sampling repeats, so the
same config always yields the same documents in the same order, and evaluation
can select exactly the held-out documents without a copy on disk.

Bad input never stops a run silently or loudly: an unreadable file or row is
counted with its reason in :class:`ReadStats` (first examples kept) and logged,
and the run fails only if nothing at all could be read.
"""

from __future__ import annotations

import io
import json
import logging
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Iterable, Iterator

import xxhash

from rsdb.errors import ConfigError, ShardError

from pipeline.formats import compression_of, detect_format

from .config import CorpusConfig

log = logging.getLogger(__name__)

_MAX_EXAMPLES = 20
_TEXT_CHUNK = 1 << 16  # plain-text files are cut into ~64 KB documents at line ends


@dataclass
class Doc:
    text: str
    lang: str
    source: str
    id: str | None = None


@dataclass
class ReadStats:
    """What reading saw: counted, with reasons for everything it skipped."""

    files: int = 0
    docs: int = 0
    bytes: int = 0
    heldout_docs: int = 0
    sampled_out_docs: int = 0
    rejected_rows: int = 0
    rejected_files: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    examples: list[dict] = field(default_factory=list)

    def reject(self, where: str, reason: str, *, whole_file: bool = False) -> None:
        if whole_file:
            self.rejected_files += 1
        else:
            self.rejected_rows += 1
        key = reason.split(":")[0]
        self.reasons[key] = self.reasons.get(key, 0) + 1
        if len(self.examples) < _MAX_EXAMPLES:
            self.examples.append({"where": where, "reason": reason})
        log.warning("skipped %s: %s", where, reason)

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def _kind(path: str) -> str:
    """Which reader a file takes: ``arrow`` (Parquet or Arrow IPC), ``jsonl``, ``text`` or ``""``."""
    fmt = detect_format(path)
    return "arrow" if fmt in ("parquet", "arrow") else fmt or ""


def _data_file_in_folder(rel: str) -> bool:
    """Whether a file found inside an input folder is training data.

    Skips side outputs of a curation run: ``rejected/`` rows, ``_work/``-style
    folders and files starting with ``_`` or ``.``, the ``README.md`` dataset card,
    and ``.json`` files (manifests; JSON Lines data is ``.jsonl``). A ``.json`` file
    named directly still reads as JSON Lines.
    """
    parts = PurePosixPath(rel).parts
    if any(p.startswith((".", "_")) or p == "rejected" for p in parts):
        return False
    name = parts[-1].lower() if parts else ""
    if name == "readme.md":  # a dataset card (curated output folders have one)
        return False
    return bool(_kind(rel)) and not name.endswith((".json", ".json.zst", ".json.gz"))


def list_files(inputs: Iterable[str]) -> list[str]:
    """Expand files, folders and globs (any fsspec URI) to the data files to read.

    Folders are searched recursively for data files (see
    :func:`_data_file_in_folder` for what is skipped).

    Raises:
        ConfigError: an input does not exist or holds no readable file.
    """
    from common.fs import list_files as expand

    out: list[str] = []
    for item in inputs:
        try:
            listing = expand(item, keep=_data_file_in_folder)
        except FileNotFoundError:
            raise ConfigError(f"input not found: {item}") from None
        prefix, found = listing.prefix, listing.paths
        if not found:
            raise ConfigError(f"no Parquet/Arrow/JSONL/text files under {item}")
        for p in found:
            if not _kind(p):
                raise ConfigError(f"{prefix}{p}: unknown file type (expected Parquet/Arrow, JSONL[.zst|.gz] or .txt)")
        out += [prefix + p for p in found]
    return out


def _str_or(value, default: str) -> str:
    return value if isinstance(value, str) and value else default


def _read_arrow(path: str, cfg: CorpusConfig, stats: ReadStats) -> Iterator[Doc]:
    import fsspec
    import pyarrow as pa
    import pyarrow.feather as feather
    import pyarrow.parquet as pq

    with fsspec.open(path, "rb") as f:
        if detect_format(path) == "parquet":
            pf = pq.ParquetFile(f)
            names = pf.schema_arrow.names
            if cfg.text_field not in names:
                raise ShardError(path, f"no '{cfg.text_field}' column (columns: {names})")
            cols = [c for c in (cfg.text_field, cfg.lang_field, cfg.source_field, cfg.id_field) if c in names]
            batches = pf.iter_batches(batch_size=1024, columns=cols)
            yield from _rows(path, batches, cfg, stats)
            return
        data = f.read()
    try:
        table = feather.read_table(pa.BufferReader(data))
    except pa.ArrowInvalid:
        table = pa.ipc.open_stream(pa.BufferReader(data)).read_all()
    if cfg.text_field not in table.column_names:
        raise ShardError(path, f"no '{cfg.text_field}' column (columns: {table.column_names})")
    yield from _rows(path, table.to_batches(max_chunksize=1024), cfg, stats)


def _rows(path, batches, cfg: CorpusConfig, stats: ReadStats) -> Iterator[Doc]:
    row = 0
    for batch in batches:
        cols = {name: batch.column(name).to_pylist() for name in batch.schema.names}
        texts = cols[cfg.text_field]
        langs = cols.get(cfg.lang_field) or [None] * len(texts)
        sources = cols.get(cfg.source_field) or [None] * len(texts)
        ids = cols.get(cfg.id_field) or [None] * len(texts)
        for text, lang, source, doc_id in zip(texts, langs, sources, ids):
            if not isinstance(text, str):
                stats.reject(f"{path} row {row}", f"text_not_string: {type(text).__name__}")
            else:
                yield Doc(text, _str_or(lang, "unknown"), _str_or(source, "unknown"), None if doc_id is None else str(doc_id))
            row += 1


def _read_jsonl(path: str, cfg: CorpusConfig, stats: ReadStats) -> Iterator[Doc]:
    import fsspec

    codec = compression_of(path)
    with fsspec.open(path, "rb", compression=codec) as f:
        # zstd readers have no readline; a buffered reader gives lines for every codec.
        lines = f if hasattr(f, "readline") and codec != "zstd" else io.BufferedReader(f, 1 << 20)
        for lineno, raw in enumerate(lines, 1):
            if not raw.strip():
                continue
            where = f"{path} line {lineno}"
            try:
                obj = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError as exc:
                stats.reject(where, f"invalid_utf8: {exc}")
                continue
            except json.JSONDecodeError as exc:
                stats.reject(where, f"invalid_json: {exc.msg}")
                continue
            if not isinstance(obj, dict):
                stats.reject(where, "not_an_object: a JSON line must be an object")
                continue
            text = obj.get(cfg.text_field)
            if not isinstance(text, str):
                stats.reject(where, f"text_not_string: '{cfg.text_field}' is {type(text).__name__}")
                continue
            doc_id = obj.get(cfg.id_field)
            yield Doc(
                text,
                _str_or(obj.get(cfg.lang_field), "unknown"),
                _str_or(obj.get(cfg.source_field), "unknown"),
                None if doc_id is None else str(doc_id),
            )


def _read_text(path: str, cfg: CorpusConfig, stats: ReadStats) -> Iterator[Doc]:
    import fsspec

    codec = compression_of(path)
    with fsspec.open(path, "rb", compression=codec) as f:
        raw = io.BufferedReader(f, 1 << 20) if codec == "zstd" else f
        reader = io.TextIOWrapper(raw, encoding="utf-8", errors="strict", newline="")
        buf: list[str] = []
        size = 0
        part = 0
        try:
            for line in reader:
                buf.append(line)
                size += len(line)
                if size >= _TEXT_CHUNK:
                    yield Doc("".join(buf), "unknown", "unknown", f"{path}#{part}")
                    buf, size, part = [], 0, part + 1
        except UnicodeDecodeError as exc:
            stats.reject(f"{path} chunk {part}", f"invalid_utf8: {exc}")
            return
        if buf:
            yield Doc("".join(buf), "unknown", "unknown", f"{path}#{part}")


_READERS = {"arrow": _read_arrow, "jsonl": _read_jsonl, "text": _read_text}


def read_file(path: str, cfg: CorpusConfig, stats: ReadStats) -> Iterator[Doc]:
    """Documents of one file; a file that cannot be read is counted and skipped."""
    stats.files += 1
    try:
        yield from _READERS[_kind(path)](path, cfg, stats)
    except ShardError as exc:
        stats.reject(exc.path, f"bad_file: {exc.problem}", whole_file=True)
    except (OSError, EOFError, ValueError) as exc:  # truncated/corrupt compression, Arrow/Parquet errors
        stats.reject(path, f"bad_file: {type(exc).__name__}: {exc}", whole_file=True)


class Sampler:
    """Deterministic held-out split and per-language/per-source repeats."""

    def __init__(self, cfg: CorpusConfig):
        self.cfg = cfg

    def _u(self, doc: Doc, salt: int) -> float:
        key = doc.id if doc.id is not None else doc.text
        return xxhash.xxh64_intdigest(key.encode("utf-8", "surrogatepass"), seed=(self.cfg.seed * 1_000_003 + salt) & (2**64 - 1)) / 2**64

    def is_heldout(self, doc: Doc) -> bool:
        return self.cfg.holdout_fraction > 0 and self._u(doc, 0) < self.cfg.holdout_fraction

    def repeats(self, doc: Doc) -> int:
        w = self.cfg.lang_weights.get(doc.lang, 1.0) * self.cfg.source_weights.get(doc.source, 1.0)
        whole = int(w)
        return whole + (1 if self._u(doc, 1) < w - whole else 0)


def iter_docs(cfg: CorpusConfig, split: str = "train", stats: ReadStats | None = None) -> Iterator[Doc]:
    """Documents of ``split`` (``train``, ``heldout`` or ``all``), sampled per the
    config for ``train``, up to ``max_bytes`` of text.

    Raises:
        ConfigError: bad inputs (before reading), or nothing readable at all.
    """
    if split not in ("train", "heldout", "all"):
        raise ConfigError(f"split: expected train, heldout or all, got {split!r}")
    stats = stats if stats is not None else ReadStats()
    files = list_files(cfg.inputs)
    sampler = Sampler(cfg)
    budget = cfg.max_bytes
    seen_any = False
    for path in files:
        for doc in read_file(path, cfg, stats):
            seen_any = True
            if split != "all":
                held = sampler.is_heldout(doc)
                if held:
                    stats.heldout_docs += 1
                if held != (split == "heldout"):
                    continue
            n = sampler.repeats(doc) if split == "train" else 1
            if n == 0:
                stats.sampled_out_docs += 1
                continue
            size = len(doc.text.encode("utf-8"))
            for _ in range(n):
                stats.docs += 1
                stats.bytes += size
                yield doc
                if budget is not None and stats.bytes >= budget:
                    return
    if not seen_any:
        raise ConfigError(f"no readable documents in {cfg.inputs} (see the skipped files logged above)")
