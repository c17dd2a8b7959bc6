"""The tokenize job: curated Parquet/Arrow shards -> RSDB token shards, on Ray Data.

Work is split into units of at most ``unit_rows`` rows: a small file is one unit, a
large one several row ranges (counted from the Parquet footer or the Arrow file, not
by reading the text), so a folder of two large files keeps every worker of a cluster
busy, as curation does. A Ray Data task loads the tokenizer once per worker, encodes a
unit in batches, writes its token shards atomically (temp file + rename, through
:class:`rsdb.ShardWriter`) and finally a small done-marker with its counts. A rerun skips every unit whose marker exists,
so a killed job resumes where it stopped and the output is the same as an
uninterrupted run (unit outputs are named after the unit, not after the order in
which workers finished). The per-source ``manifest.json`` is assembled from the
markers at the end, so it is written only once every unit is done.

Output layout::

    OUT/<source>/manifest.json            # RSDB manifest over every unit's shards
    OUT/<source>/parts/<unit>/shard-*.arrow
    OUT/_units/run.json                   # the run record: tokenizer + settings fingerprint (common.units)
    OUT/_units/<unit>.json                # done-markers (counts per source / language)
    OUT/rejected/<unit>.parquet           # rows that could not be encoded, with reason
    OUT/summary.json                      # tokens per source and per language, timings

With ``format="megatron"`` each source is instead one Megatron-LM indexed dataset,
``OUT/<source>/text_document.bin`` / ``.idx`` (uint16 tokens when the vocabulary fits,
else int32; Megatron's ``--data-path OUT/<source>/text_document``), plus
``OUT/<source>/megatron.json`` with the counts. Units write ``parts/<unit>.bin/.idx``,
which are merged in unit order once every unit is done, then removed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from common.config import validation_message
from common.fs import atomic_path, atomic_write
from common.units import RunRecord, UnitLedger, fingerprint
from rsdb.errors import ConfigError, TrinityError
from rsdb.manifest import dump_manifest
from rsdb.naming import claim_source_dir, source_dir_name

log = logging.getLogger(__name__)

_INPUT_SUFFIXES = (".parquet", ".arrow", ".feather", ".ipc")
#: Default rows per unit: ~20k curated documents are minutes of encoding on one core,
#: small enough that two large files still spread over a cluster, large enough that
#: the per-unit cost (a marker, a few shard files) stays negligible.
UNIT_ROWS = 20_000
MEGATRON_PREFIX = "text_document"  # Megatron's preprocess_data.py names datasets <prefix>_text_document
UNITS_DIR = "_units"  # the run record and done-markers (common.units.UnitLedger)


class SourceCounts(BaseModel):
    """One source's part of a unit: documents, tokens, and the manifest of its shards."""

    docs: int
    tokens: int
    tokens_per_lang: dict[str, int]
    manifest: dict[str, Any]


class UnitResult(BaseModel):
    """A unit's done-marker ``OUT/_units/<unit>.json``: what the merge step needs from it."""

    model_config = ConfigDict(extra="forbid")

    unit: str
    file: str
    rows: int
    rejected: int
    sources: dict[str, SourceCounts]
    seconds: float


class TokenizeConfig(BaseModel):
    """Everything one tokenize run does: the one definition of the job's options.

    ``trinity-data tokenize`` derives its flags from these fields (``--unit-rows`` for
    ``unit_rows``, ``--bos/--no-bos``...; ``inputs`` is ``--input``, ``output`` is
    ``--out``) and ``python -m jobs.tokenize`` reads them as its YAML keys, so every knob is
    reachable from both. Validated when built, before any work: :func:`load_config` (and
    the CLI) report a bad value as a :class:`ConfigError` naming the key or flag
    (``unit_rows: Input should be greater than 0``). Plain data, so Ray ships it to the workers.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    tokenizer: str = Field(description="folder with tokenizer.json (a path every worker sees)")
    inputs: list[str] = Field(min_length=1, description="curated Parquet/Arrow files, folders or globs (fsspec URIs)")
    output: str = Field(description="output folder for token shards (local or a shared mount: they are memory-mapped)")
    source: str | None = Field(None, description="one fixed source name for every row")
    source_field: str | None = Field(None, description="split the output by this column (default: source)")
    text_field: str = Field("text", description="column holding the text")
    id_field: str = Field("id", description="column holding the document id (missing: <unit>:<row>)")
    lang_field: str = Field("lang", description="column holding the language (counted per language)")
    bos: bool = Field(True, description="prepend the tokenizer's bos token")
    eos: bool = Field(True, description="append the tokenizer's eos token")
    batch_size: int = Field(512, gt=0, description="documents encoded per call")
    shard_tokens: int = Field(1 << 26, gt=0, description="target tokens per shard file")
    max_doc_tokens: int | None = Field(None, gt=0, description="reject longer documents (to rejected/)")
    # tiktoken twin of the trained vocabulary: identical ids, ~5x the encode speed of `tokenizers`.
    fast: bool = Field(True, description="encode with the tiktoken twin (same ids, faster)")
    format: Literal["rsdb", "megatron"] = Field(
        "rsdb", description="rsdb (token shards) or megatron (one .bin/.idx per source)")
    unit_rows: int = Field(UNIT_ROWS, gt=0, description="rows per work unit: larger files are split into row ranges")
    workers: int | None = Field(None, gt=0, description="tokenizer workers (default: the cluster's CPUs)")
    overwrite: bool = Field(False, description="replace an output folder written with another tokenizer or settings")

    @field_validator("inputs", mode="before")
    @classmethod
    def _one_input(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("tokenizer", "output")
    @classmethod
    def _local(cls, value: str) -> str:
        if "://" in value and not value.startswith("file://"):
            raise ValueError(f"{value} must be a local or shared-mount path, not a URI (token shards are "
                             "memory-mapped; the tokenizer is read by every worker)")
        return value.removeprefix("file://")

    @model_validator(mode="after")
    def _source(self) -> TokenizeConfig:
        if self.source is not None and self.source_field is not None:
            raise ValueError("give one of source (a fixed name) or source_field (a column to split by), not both")
        if self.source is None and self.source_field is None:
            object.__setattr__(self, "source_field", "source")  # frozen: set once, while validating
        return self


def load_config(raw: Any, where: str = "tokenize config") -> TokenizeConfig:
    """A parsed mapping (YAML config, CLI flags) as a :class:`TokenizeConfig`; ConfigError naming ``where``."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(raw).__name__}")
    try:
        return TokenizeConfig.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(f"{where}: {validation_message(e)}") from None


def check_tokenizer_dir(path: str) -> Path:
    """The folder's ``tokenizer.json``, checked before any cluster starts; ConfigError naming the path."""
    folder = Path(str(path).removeprefix("file://"))
    if not folder.exists():
        raise ConfigError(f"tokenizer {folder}: no such folder")
    tok = folder / "tokenizer.json"
    if not tok.is_file():
        raise ConfigError(f"tokenizer {folder}: no tokenizer.json there (train one with `trinity-data tokenizer "
                          "train`, or point --tokenizer at its folder)")
    return tok


def list_inputs(inputs: str | Iterable[str]) -> list[str]:
    """Expand input URIs (files, folders, globs; any fsspec protocol) to sorted Parquet/Arrow files.

    A curated output folder ``OUT`` contributes exactly the shards its manifest
    (``OUT.curation/manifest.json``, read by :func:`pipeline.manifest.kept_shard_uris`)
    lists; other folders are walked by :func:`tokenizer.corpus.list_files`, which skips
    ``rejected/`` and ``_``/``.``-prefixed paths (work state, temp files).
    """
    from .corpus import list_files

    items = [inputs] if isinstance(inputs, str) else list(inputs)
    expanded: list[str] = []
    for item in items:
        expanded.extend(_manifest_shards(item) or [item])
    files = [f for f in list_files(expanded) if f.endswith(_INPUT_SUFFIXES)]
    if not files:
        raise ConfigError(f"no Parquet/Arrow files under {items}")
    return files


def _manifest_shards(item: str) -> list[str]:
    """The kept shards a curated output folder ``item`` lists in its manifest, or [] when it has none.

    Raises:
        ManifestError: the folder has a manifest but it is unreadable or a field has the wrong type.
    """
    from pipeline.manifest import kept_shard_uris

    if any(ch in item for ch in "*?["):
        return []
    return kept_shard_uris(item) or []


def unit_name(index: int, path: str, part: int | None = None) -> str:
    """``u<file>-<stem>`` for a whole file, ``u<file>-<stem>-r<part>`` for its row ranges (sort = order)."""
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(path).name.split(".")[0])[:60]
    return f"u{index:05d}-{stem}" + (f"-r{part:05d}" if part is not None else "")


def count_rows(path: str) -> int:
    """Rows of a Parquet file (from its footer) or an Arrow IPC file/stream."""
    import fsspec
    import pyarrow.parquet as pq

    with fsspec.open(path, "rb") as f:
        if path.endswith(".parquet"):
            return pq.ParquetFile(f).metadata.num_rows
    return _read_table(path).num_rows


def plan_units(files: list[str], unit_rows: int) -> list[dict[str, Any]]:
    """Units of at most ``unit_rows`` rows: ``{"unit", "path", "start", "stop"}``, in file and row order."""
    units: list[dict[str, Any]] = []
    for i, path in enumerate(files):
        n = count_rows(path)
        whole = unit_name(i, path)
        if n <= unit_rows:
            units.append({"unit": whole, "path": path, "start": 0, "stop": n, "file_unit": whole})
            continue
        for k, start in enumerate(range(0, n, unit_rows)):
            units.append({"unit": unit_name(i, path, k), "path": path, "start": start,
                          "stop": min(n, start + unit_rows), "file_unit": whole})
    return units


def _read_table(path: str, start: int = 0, stop: int | None = None,
                columns: list[str] | None = None) -> pa.Table:
    """Rows ``[start, stop)`` of a Parquet/Arrow file; Parquet reads only the row groups they touch."""
    import fsspec
    import pyarrow.parquet as pq
    from pyarrow import feather

    with fsspec.open(path, "rb") as f:
        if path.endswith(".parquet"):
            pf = pq.ParquetFile(f)
            have = set(pf.schema_arrow.names)
            cols = [c for c in columns if c in have] if columns else None
            stop = pf.metadata.num_rows if stop is None else stop
            groups, first, seen = [], None, 0
            for g in range(pf.metadata.num_row_groups):
                rows = pf.metadata.row_group(g).num_rows
                if seen < stop and seen + rows > start:
                    groups.append(g)
                    first = seen if first is None else first
                seen += rows
            if not groups:
                return pf.schema_arrow.empty_table() if cols is None else pf.schema_arrow.empty_table().select(cols)
            table = pf.read_row_groups(groups, columns=cols)
            return table.slice(start - first, stop - start)
        data = f.read()
    try:
        table = feather.read_table(pa.BufferReader(data))
    except pa.ArrowInvalid:
        table = pa.ipc.open_stream(pa.BufferReader(data)).read_all()
    stop = table.num_rows if stop is None else stop
    return table.slice(start, stop - start)


class _UnitTokenizer:
    """Ray Data callable class: one tokenizer per worker, one input file per call."""

    def __init__(self, cfg: TokenizeConfig):
        from tokenizer import load as load_tokenizer

        self.cfg = cfg
        self.tok = load_tokenizer(cfg.tokenizer)
        self.vocab_size = self.tok.get_vocab_size(with_added_tokens=True)
        self.bos = self._special("bos") if cfg.bos else None
        self.eos = self._special("eos") if cfg.eos else None
        self.name = Path(cfg.tokenizer).name
        self.fast = None
        if cfg.fast:
            try:
                from tokenizer import FastEncoder
            except ImportError:  # tiktoken missing: fall back to `tokenizers`
                log.warning("tiktoken is not installed; encoding with `tokenizers` (slower, same ids)")
            else:
                self.fast = FastEncoder(self.tok, threads=1)

    def _special(self, which: str) -> int:
        import tokenizer

        fn = getattr(tokenizer, f"{which}_id")
        return int(fn(self.tok))

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        return {"result": json.dumps(tokenize_unit(self, row["unit"], row["path"], row.get("start", 0),
                                                   row.get("stop"), row.get("file_unit")))}


def _encode(worker: _UnitTokenizer, texts: list[str]) -> list[np.ndarray]:
    if worker.fast is not None:
        encoded = worker.fast.encode_batch(texts)
    else:
        encoded = [e.ids for e in worker.tok.encode_batch(texts, add_special_tokens=False)]
    out = []
    for ids in encoded:
        ids = list(ids)
        if worker.bos is not None:
            ids = [worker.bos, *ids]
        if worker.eos is not None:
            ids.append(worker.eos)
        out.append(np.asarray(ids, dtype=np.uint32))
    return out


def tokenize_unit(worker: _UnitTokenizer, unit: str, path: str, start: int = 0,
                  stop: int | None = None, file_unit: str | None = None) -> dict[str, Any]:
    """Encode rows ``[start, stop)`` of one input file; returns its counts (also written as the done-marker)."""
    import rsdb

    cfg = worker.cfg
    out = Path(cfg.output)
    started = time.perf_counter()
    wanted = [c for c in (cfg.text_field, cfg.id_field, cfg.lang_field, cfg.source_field) if c]
    table = _read_table(path, start, stop, columns=wanted)
    missing = [c for c in (cfg.text_field, cfg.source_field) if c and c not in table.column_names]
    if missing:
        raise TrinityError(f"{path}: missing column(s) {missing}; columns are {table.column_names}")
    n = table.num_rows
    file_unit = file_unit or unit
    texts = table.column(cfg.text_field).to_pylist()
    ids = table.column(cfg.id_field).to_pylist() if cfg.id_field in table.column_names else [None] * n
    # a missing id is the file's unit name and the row number in the file, whatever the split
    ids = [str(i) if i is not None else f"{file_unit}:{start + row}" for row, i in enumerate(ids)]
    langs = table.column(cfg.lang_field).to_pylist() if cfg.lang_field in table.column_names else [None] * n
    sources = table.column(cfg.source_field).to_pylist() if cfg.source_field else [cfg.source] * n

    writers: dict[str, Any] = {}
    folders: dict[str, str] = {}  # shard folder -> its source: two sources never share one
    counts: dict[str, dict[str, Any]] = {}
    rejected: list[dict[str, Any]] = []
    for b0 in range(0, n, cfg.batch_size):
        rows = range(b0, min(n, b0 + cfg.batch_size))
        good = []
        for r in rows:
            reason = _reject_reason(texts[r], sources[r])
            if reason:
                rejected.append({"unit": unit, "file": path, "row": start + r, "id": ids[r], "reject_reason": reason,
                                 "text": texts[r] if isinstance(texts[r], str) else None})
            else:
                good.append(r)
        for r, tokens in zip(good, _encode(worker, [texts[r] for r in good])):
            if cfg.max_doc_tokens and len(tokens) > cfg.max_doc_tokens:
                rejected.append({"unit": unit, "file": path, "row": start + r, "id": ids[r],
                                 "reject_reason": f"too_long: {len(tokens)} tokens > {cfg.max_doc_tokens}",
                                 "text": texts[r]})
                continue
            src = str(sources[r])
            if src not in writers:
                folder = claim_source_dir(folders, src)
                if cfg.format == "megatron":
                    writers[src] = _MegatronPart(out / folder / "parts" / unit, worker.vocab_size)
                else:
                    writers[src] = rsdb.ShardWriter(
                        out / folder / "parts" / unit, source=src, shard_tokens=cfg.shard_tokens,
                        tokenizer=worker.name, vocab_size=worker.vocab_size,
                    )
                counts[src] = {"docs": 0, "tokens": 0, "tokens_per_lang": {}}
            extra = {"lang": str(langs[r])} if langs[r] is not None else {}
            writers[src].add(tokens, doc_id=ids[r], **extra)
            c = counts[src]
            c["docs"] += 1
            c["tokens"] += len(tokens)
            lang = str(langs[r]) if langs[r] is not None else "unknown"
            c["tokens_per_lang"][lang] = c["tokens_per_lang"].get(lang, 0) + len(tokens)
    manifests = {src: w.close() for src, w in writers.items()}
    if rejected:
        _write_rejected(out / "rejected" / f"{unit}.parquet", rejected)
    result = {
        "unit": unit, "file": path, "rows": n, "rejected": len(rejected),
        "sources": {src: {**counts[src], "manifest": manifests[src]} for src in counts},
        "seconds": time.perf_counter() - started,
    }
    UnitLedger(out / UNITS_DIR).mark(unit, UnitResult.model_validate(result))
    return result


class _MegatronPart:
    """One unit's documents of one source as a Megatron dataset ``parts/<unit>.bin/.idx``.

    Holds the unit's token arrays until ``close`` (4 bytes a token: ~200 MB for a unit of
    20k long documents); write_megatron then writes both files atomically.
    """

    def __init__(self, prefix: Path, vocab_size: int):
        self.prefix = prefix
        self.dtype = megatron_dtype(vocab_size)
        self.docs: list[np.ndarray] = []

    def add(self, tokens: np.ndarray, doc_id: Any = None, **_columns: Any) -> None:
        self.docs.append(tokens)  # Megatron datasets have no per-document columns

    def close(self) -> dict[str, Any]:
        from rsdb import write_megatron

        info = write_megatron(self.prefix, self.docs, dtype=self.dtype)
        return {"prefix": f"parts/{self.prefix.name}", "num_docs": info["num_docs"],
                "num_tokens": info["num_tokens"], "dtype": np.dtype(self.dtype).name}


def megatron_dtype(vocab_size: int) -> type:
    """uint16 when every id fits (Megatron's own choice below 65,500 ids), else int32."""
    return np.uint16 if vocab_size <= 1 << 16 else np.int32


def _reject_reason(text: Any, source: Any) -> str | None:
    if not isinstance(text, str):
        return "text_not_a_string" if text is not None else "text_missing"
    if not text:
        return "text_empty"
    if source is None:
        return "source_missing"
    return None


def _write_rejected(path: Path, rows: list[dict[str, Any]]) -> None:
    import pyarrow.parquet as pq

    with atomic_path(path) as tmp:
        pq.write_table(pa.Table.from_pylist(rows), tmp, compression="zstd")


def _atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, text)


def _claim_source_dirs(results: list[dict[str, Any]]) -> None:
    """Refuse, before anything is merged, two sources from different units that share one folder."""
    folders: dict[str, str] = {}
    for src in sorted({src for res in results for src in res["sources"]}):
        claim_source_dir(folders, src)


def _merge_manifests(out: Path, results: list[dict[str, Any]], cfg: TokenizeConfig) -> dict[str, dict[str, Any]]:
    """Write OUT/<source>/manifest.json listing every unit's shards, in unit order."""
    _claim_source_dirs(results)
    merged: dict[str, dict[str, Any]] = {}
    for res in sorted(results, key=lambda r: r["unit"]):
        for src, info in res["sources"].items():
            m = info["manifest"]
            agg = merged.setdefault(src, {
                **{k: v for k, v in m.items() if k not in ("shards", "num_docs", "num_tokens", "tokens_per_source",
                                                             "extra")},
                "source": src, "num_docs": 0, "num_tokens": 0, "shards": [],
                "extra": {"tokens_per_lang": {}, "units": 0, "bos": cfg.bos, "eos": cfg.eos},
            })
            for shard in m["shards"]:
                agg["shards"].append({**shard, "file": f"parts/{res['unit']}/{shard['file']}"})
            agg["num_docs"] += m["num_docs"]
            agg["num_tokens"] += m["num_tokens"]
            agg["extra"]["units"] += 1
            for lang, t in info["tokens_per_lang"].items():
                agg["extra"]["tokens_per_lang"][lang] = agg["extra"]["tokens_per_lang"].get(lang, 0) + t
    for src, agg in merged.items():
        agg["tokens_per_source"] = {src: agg["num_tokens"]}
        # Sealed after the last edit: the digest covers the merged shard list and totals.
        merged[src] = dump_manifest(out / source_dir_name(src), agg)
    return merged


def _merge_megatron(out: Path, results: list[dict[str, Any]], cfg: TokenizeConfig) -> dict[str, dict[str, Any]]:
    """Concatenate every unit's ``parts/<unit>`` dataset, in unit order, into ``OUT/<source>/text_document``.

    Resumable: the merged files and ``megatron.json`` are written atomically, the parts
    removed only afterwards; a rerun that finds no parts keeps the merged dataset.
    """
    import shutil

    _claim_source_dirs(results)

    from rsdb import open_megatron, write_megatron

    per_src: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for res in sorted(results, key=lambda r: r["unit"]):
        for src, info in res["sources"].items():
            per_src.setdefault(src, []).append((res["unit"], info))
    merged: dict[str, dict[str, Any]] = {}
    for src, parts in per_src.items():
        folder = out / source_dir_name(src)
        meta_path = folder / "megatron.json"
        if not (folder / "parts").exists() and meta_path.exists():
            merged[src] = json.loads(meta_path.read_text())
            continue
        dtype = np.dtype(parts[0][1]["manifest"]["dtype"])

        def docs(parts=parts, folder=folder):
            for _unit, info in parts:
                view = open_megatron(folder / info["manifest"]["prefix"])
                off, tok = view.offsets, view.tokens
                for i in range(view.num_docs):
                    yield tok[off[i]: off[i + 1]]

        info = write_megatron(folder / MEGATRON_PREFIX, docs(), dtype=dtype)
        tokens_per_lang: dict[str, int] = {}
        for _unit, part in parts:
            for lang, t in part["tokens_per_lang"].items():
                tokens_per_lang[lang] = tokens_per_lang.get(lang, 0) + t
        meta = {"format": "megatron", "prefix": MEGATRON_PREFIX, "source": src, "dtype": dtype.name,
                "num_docs": info["num_docs"], "num_tokens": info["num_tokens"], "units": len(parts),
                "tokenizer": Path(cfg.tokenizer).name, "bos": cfg.bos, "eos": cfg.eos,
                "extra": {"tokens_per_lang": tokens_per_lang}}
        _atomic_write_text(meta_path, json.dumps(meta, indent=2))
        shutil.rmtree(folder / "parts")
        merged[src] = meta
    return merged


@dataclass
class TokenizeSummary:
    out_dir: str
    units_total: int
    units_skipped: int
    rows: int
    rejected: int
    tokens_per_source: dict[str, int]
    docs_per_source: dict[str, int]
    tokens_per_lang: dict[str, int]
    seconds: float

    @property
    def tokens(self) -> int:
        return sum(self.tokens_per_source.values())


def tokenize_to_shards(cfg: TokenizeConfig) -> TokenizeSummary:
    """Run the tokenize job on the current Ray cluster (``ray.init()`` first; local by default).

    Args:
        cfg: what to do (tokenizer, inputs, output folder, source naming, bos/eos...;
            ``workers`` caps the tokenizer actors, ``overwrite`` clears an output folder
            written with another tokenizer or settings, which is otherwise an error:
            resuming into it would mix two tokenizations).

    Returns:
        Counts per source and language; the same figures are in ``OUT/summary.json``.
    """
    from pipeline._lock import OutputLock

    started = time.perf_counter()
    out = Path(cfg.output)
    # One writer per output folder: a second job would mix its units into this one's.
    with OutputLock(str(out), job="tokenize"):
        return _tokenize_locked(cfg, out, started)


def _tokenize_locked(cfg: TokenizeConfig, out: Path, started: float) -> TokenizeSummary:
    import ray

    files = list_inputs(cfg.inputs)
    ledger = _claim_output(out, cfg)
    units = plan_units(files, cfg.unit_rows)
    done = {u["unit"]: _read_marker(ledger, u["unit"]) for u in units}
    todo = [u for u in units if done[u["unit"]] is None]
    log.info("tokenize: %d input files in %d units, %d already done", len(files), len(units),
             len(units) - len(todo))
    results = [r for r in done.values() if r is not None]
    if todo:
        workers = cfg.workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        ds = ray.data.from_items(todo, override_num_blocks=len(todo)).map(
            _UnitTokenizer,
            fn_constructor_args=(cfg,),
            concurrency=min(workers, len(todo)),
            num_cpus=1,
            # One encoder thread per worker: Ray already runs one worker per CPU.
            runtime_env={"env_vars": {"RAYON_RS_NUM_CPUS": "1", "TOKENIZERS_PARALLELISM": "false"}},
        )
        results.extend(json.loads(r["result"]) for r in ds.take_all())
    merged = (_merge_megatron if cfg.format == "megatron" else _merge_manifests)(out, results, cfg)
    tokens_per_lang: dict[str, int] = {}
    for agg in merged.values():
        for lang, t in agg["extra"]["tokens_per_lang"].items():
            tokens_per_lang[lang] = tokens_per_lang.get(lang, 0) + t
    summary = TokenizeSummary(
        out_dir=str(out), units_total=len(units), units_skipped=len(units) - len(todo),
        rows=sum(r["rows"] for r in results), rejected=sum(r["rejected"] for r in results),
        tokens_per_source={s: a["num_tokens"] for s, a in merged.items()},
        docs_per_source={s: a["num_docs"] for s, a in merged.items()},
        tokens_per_lang=dict(sorted(tokens_per_lang.items(), key=lambda kv: -kv[1])),
        seconds=time.perf_counter() - started,
    )
    _atomic_write_text(out / "summary.json", json.dumps(summary.__dict__, indent=2))
    return summary


#: The settings that make two runs' shards interchangeable (with the tokenizer file's bytes).
#: Kept as they were before :mod:`common.units`, so folders of earlier runs still resume.
#: Hashed under these names (``add_bos`` was the option's earlier name for ``bos``).
FINGERPRINT_KEYS = {"source": "source", "source_field": "source_field", "text_field": "text_field",
                    "id_field": "id_field", "lang_field": "lang_field", "add_bos": "bos", "add_eos": "eos",
                    "shard_tokens": "shard_tokens", "max_doc_tokens": "max_doc_tokens", "format": "format",
                    "unit_rows": "unit_rows"}


def run_record(cfg: TokenizeConfig) -> RunRecord:
    """This run's record: the tokenizer file and the encoding settings, fingerprinted."""
    settings = {key: getattr(cfg, field) for key, field in FINGERPRINT_KEYS.items()}
    tok = Path(cfg.tokenizer, "tokenizer.json").read_bytes()
    # the file's digest, beside its path: the error then says when the same path holds another tokenizer
    return RunRecord(job="tokenize", fingerprint=fingerprint(settings, [tok]),
                     settings={**settings, "tokenizer": cfg.tokenizer,
                               "tokenizer_sha256": hashlib.sha256(tok).hexdigest()[:16]})


def _legacy_record(raw: dict[str, Any]) -> RunRecord | None:
    """``{"fingerprint", "tokenizer"}``, the run.json of runs before the typed record (same fingerprint)."""
    if isinstance(raw.get("fingerprint"), str) and set(raw) <= {"fingerprint", "tokenizer"}:
        return RunRecord(format_version=0, job="tokenize", fingerprint=raw["fingerprint"])
    return None


def _claim_output(out: Path, cfg: TokenizeConfig) -> UnitLedger:
    """Start or resume the run in ``out``; refuse one written with another tokenizer or settings."""
    import shutil

    check_tokenizer_dir(cfg.tokenizer)

    def clear() -> None:
        for child in out.iterdir():  # all but the lock this job holds
            if child.name != "_lock.json":
                shutil.rmtree(child) if child.is_dir() else child.unlink()

    ledger = UnitLedger(out / UNITS_DIR, label=str(out))
    ledger.claim(run_record(cfg), overwrite=cfg.overwrite, clear=clear, legacy=_legacy_record,
                 hint="use another --out, or --overwrite to replace them")
    return ledger


def _read_marker(ledger: UnitLedger, unit: str) -> dict[str, Any] | None:
    """A done unit's counts, or None (no marker, or an unreadable one: redo the unit)."""
    marker = ledger.done(unit, UnitResult)
    return None if marker is None else marker.model_dump()
