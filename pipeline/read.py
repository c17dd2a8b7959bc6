"""Readers: turn input files into work units, and one unit into an Arrow table.

A *work unit* is a deterministic slice of the input (a record range of one file,
or a group of plain-text files). Units are the resume granularity: each one's
output is committed atomically with a done marker, so a rerun skips finished units.
Planning counts the records of each file once (a streaming pass for JSONL, metadata
for Parquet/Arrow) and is saved with the run, so a resumed run never re-plans.

Every record becomes exactly one row: kept (``id``, ``text``, ``source``,
``source_file``, ``source_line`` and the kept fields) or rejected by the ``read``
stage with a reason (malformed JSON, invalid UTF-8, missing or non-string text field),
always with the file and line it came from. A bad record never stops the run.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import PurePosixPath
from typing import Any, Iterator

import pyarrow as pa
import xxhash

from common.fs import has_glob, list_files, url_to_fs
from pipeline.config import InputConfig
from pipeline.errors import ConfigError
from pipeline._codecs import MAGIC, DamagedStream, decoded_chunks, sniff
from pipeline.formats import compression_of, detect_format
from pipeline.stages.base import REJECT_REASON, REJECT_STAGE

log = logging.getLogger(__name__)

READ_STAGE = "read"
UNIT = "_unit"
ROW = "_row"



@dataclass(frozen=True)
class WorkUnit:
    """One slice of the input: records ``[start, stop)`` of ``path`` (or the text files in ``paths``).

    JSONL units also know where their bytes are: line ``start`` begins ``offset`` decoded
    bytes into the file, inside the compressed member/frame that starts at compressed
    byte ``seek`` (decoded offset ``seek_decoded``); a reader seeks there instead of
    decoding the file from its start. A ``bad`` unit stands for a file (or the damaged
    rest of one) that cannot be read: one rejected row with ``note`` as the reason.
    """

    index: int
    format: str
    path: str
    start: int
    stop: int
    paths: tuple[str, ...] = ()
    offset: int = 0
    seek: int = 0
    seek_decoded: int = 0
    note: str = ""

    @property
    def name(self) -> str:
        return f"u{self.index:06d}"

    @property
    def size(self) -> int:
        return len(self.paths) if self.format == "text" else self.stop - self.start

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["paths"] = list(self.paths)
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "WorkUnit":
        return cls(**{**d, "paths": tuple(d.get("paths", ()))})


# --------------------------------------------------------------------------- listing


def _fs(url: str, storage_options: dict[str, Any]):
    return url_to_fs(url, storage_options)


def _visible_name(rel: str) -> bool:
    return not PurePosixPath(rel).name.startswith((".", "_"))


def list_inputs(cfg: InputConfig) -> list[tuple[str, str]]:
    """Expand ``cfg.paths`` to sorted ``(format, uri)`` pairs.

    Raises:
        ConfigError: a path does not exist, or holds no readable file.
    """
    found: list[tuple[str, str]] = []
    for item in cfg.paths:
        fs, path, prefix = _fs(item, cfg.storage_options)
        if not has_glob(path) and fs.isdir(path) and (
                cfg.format == "hf" and cfg.hf_builder is None or fs.exists(f"{path}/state.json")):
            found.extend(("hf", prefix + f) for f in _hf_saved_files(fs, path))
            continue
        try:  # the shared lister; in folders, hidden and "_" names (temp files, work state) are skipped
            files = list_files(item, cfg.storage_options, keep=_visible_name).paths
        except FileNotFoundError:
            raise ConfigError(f"input.paths: {item} not found") from None
        if files == [path] and not prefix:  # a local file named directly keeps the name the user gave
            files = [item.removeprefix("file://")]
        for f in files:
            fmt = cfg.format if cfg.format != "auto" else detect_format(f)
            if cfg.hf_builder is not None:
                fmt = "hf"
            if fmt is None:
                if len(files) == 1:
                    raise ConfigError(f"input.paths: cannot tell the format of {item}; set input.format")
                log.warning("skipping %s: unknown format (set input.format to read it)", f)
                continue
            found.append((fmt, f if f == item.removeprefix("file://") else prefix + f))
    if not found:
        raise ConfigError(f"input.paths: no readable files under {cfg.paths}")
    return found


def _hf_saved_files(fs, path: str) -> list[str]:
    """The Arrow files of a ``datasets`` ``save_to_disk`` folder (in order)."""
    state_path = f"{path}/state.json"
    if not fs.exists(state_path):
        raise ConfigError(f"input.paths: {path} is not a datasets.save_to_disk folder (no state.json)")
    with fs.open(state_path, "r") as f:
        state = json.load(f)
    return [f"{path}/{d['filename']}" for d in state.get("_data_files", [])]


# --------------------------------------------------------------------------- planning


def _open_raw(uri: str, storage_options: dict[str, Any]):
    import fsspec

    return fsspec.open(uri, "rb", **storage_options).open()


class BadInputFile(ConfigError):
    """Input files that cannot be read as what their names say (``input.on_bad_file: error``)."""

    def __init__(self, problems: list[tuple[str, str]]):
        self.problems = problems
        shown = "; ".join(f"{uri}: {why}" for uri, why in problems[:10])
        more = f" (and {len(problems) - 10} more)" if len(problems) > 10 else ""
        super().__init__(f"{len(problems)} unreadable input file(s): {shown}{more}; fix or remove them, or set "
                         f"input.on_bad_file: reject to reject them into rejected/ and go on")


_EXPECT = {"gzip": ".gz", "zstd": ".zst", "bz2": ".bz2", "xz": ".xz"}


def probe_file(fmt: str, uri: str, cfg: InputConfig) -> str | None:
    """What is wrong with a file before reading it (its bytes contradict its name), or ``None``."""
    if fmt in ("hf",):
        return None
    codec = compression_of(uri)
    with _open_raw(uri, cfg.storage_options) as f:
        head = f.read(16)
        kind = sniff(head)
        if codec is not None:
            if kind == "empty":
                return f"bad_file: empty, expected {codec} data (the name ends in {_EXPECT[codec]})"
            if kind != codec:
                return f"bad_file: expected {codec} data (the name ends in {_EXPECT[codec]}) but it is {_what(kind)}"
            return None
        if fmt == "parquet":
            size = f.seek(0, 2)
            f.seek(max(0, size - 4))
            tail = f.read(4)
            if kind != "parquet" or tail != MAGIC["parquet"] or size < 12:
                return (f"bad_file: not a Parquet file (no PAR1 magic at its "
                        f"{'start' if kind != 'parquet' else 'end: truncated?'}; it is {_what(kind)})")
            return None
        if fmt in ("jsonl", "text") and kind in _EXPECT:
            return f"bad_file: it is {kind}-compressed but its name has no {_EXPECT[kind]} suffix"
    return None


def _what(kind: str) -> str:
    return {"text": "plain text", "empty": "empty", "binary": "unrecognised binary data",
            "arrow": "an Arrow IPC file"}.get(kind, f"{kind} data")


@dataclass
class _LineIndex:
    """What one counting pass over a JSONL file learns: its lines and where units start."""

    lines: int
    offsets: list[int]  # decoded byte offset of every unit_rows-th line
    frames: list[tuple[int, int]]  # (compressed, decoded) offset of every member/frame start
    damage: DamagedStream | None = None


def index_jsonl(uri: str, cfg: InputConfig) -> _LineIndex:
    """Count a JSONL file's lines and note every ``unit_rows``-th line's decoded byte offset."""
    import numpy as np

    codec = compression_of(uri)
    every = cfg.unit_rows
    offsets = [0]
    frames: list[tuple[int, int]] = []
    n, pos, last = 0, 0, b"\n"
    damage = None
    with _open_raw(uri, cfg.storage_options) as f:
        try:
            for chunk in decoded_chunks(f, codec, frames=frames):
                ends = np.flatnonzero(np.frombuffer(chunk, np.uint8) == 10)
                # Lines n+1, n+2, ... start after these newlines; keep every unit_rows-th start.
                first = (-(n + 1)) % every  # index into ends of the first newline ending a unit
                offsets.extend((pos + ends[first::every] + 1).tolist())
                n += len(ends)
                pos += len(chunk)
                last = chunk
        except DamagedStream as e:
            damage = e
    if damage is None and not last.endswith(b"\n"):
        n += 1  # a last line without its newline
    offsets = [o for i, o in enumerate(offsets) if i * every < n]
    return _LineIndex(n, offsets, frames, damage)


def count_records(fmt: str, uri: str, cfg: InputConfig) -> int:
    """How many records (lines, rows, files) a file holds."""
    if fmt == "jsonl":
        return index_jsonl(uri, cfg).lines
    if fmt == "parquet":
        import pyarrow.parquet as pq

        fs, path, _ = _fs(uri, cfg.storage_options)
        with fs.open(path, "rb") as f:
            return pq.ParquetFile(f).metadata.num_rows
    if fmt in ("arrow", "hf"):
        return _read_table(fmt, uri, cfg).num_rows
    if fmt == "text":
        return 1
    raise ConfigError(f"input.format: unsupported format {fmt!r}")


def _jsonl_units(uri: str, cfg: InputConfig, first_index: int) -> tuple[list[WorkUnit], str | None]:
    idx = index_jsonl(uri, cfg)
    units = []
    for k, start in enumerate(range(0, idx.lines, cfg.unit_rows)):
        offset = idx.offsets[k]
        seek, seek_decoded = 0, 0
        for comp, dec in idx.frames:  # the last member/frame starting at or before the unit's bytes
            if dec > offset:
                break
            seek, seek_decoded = comp, dec
        units.append(WorkUnit(first_index + k, "jsonl", uri, start, min(idx.lines, start + cfg.unit_rows),
                              offset=offset, seek=seek, seek_decoded=seek_decoded))
    if idx.damage is None:
        return units, None
    d = idx.damage
    return units, (f"truncated_or_damaged: the {d.codec} stream {d.problem} at compressed byte offset "
                   f"{d.offset:,}; {idx.lines:,} complete lines before it were kept, the rest of the file "
                   f"(from decoded byte {d.decoded:,}) is unreadable")


def plan_units(cfg: InputConfig) -> list[WorkUnit]:
    """Split the input into work units of at most ``cfg.unit_rows`` records, in a fixed order.

    Every file is checked first (its bytes against its name; compressed JSONL decoded to
    the end). With ``input.on_bad_file: error`` (the default) any bad file stops the run
    here, before work starts, with every bad file named; with ``reject`` a bad file
    becomes one rejected row and a damaged one keeps the lines decoded before the damage.

    Raises:
        BadInputFile: a file's bytes contradict its name, or it is damaged (``error`` mode).
    """
    units: list[WorkUnit] = []
    texts: list[str] = []
    bad: list[tuple[str, str]] = []

    def flush_texts() -> None:
        for i in range(0, len(texts), cfg.unit_rows):
            group = tuple(texts[i : i + cfg.unit_rows])
            units.append(WorkUnit(len(units), "text", group[0], 0, len(group), group))
        texts.clear()

    def reject_file(uri: str, line: int, why: str) -> None:
        bad.append((uri, why))
        units.append(WorkUnit(len(units), "bad", uri, line, line + 1, note=why))

    for fmt, uri in list_inputs(cfg):
        problem = probe_file(fmt, uri, cfg)
        if fmt == "text" and problem is None:
            texts.append(uri)
            continue
        flush_texts()
        if problem is not None:
            reject_file(uri, 0, problem)
            continue
        if fmt == "jsonl":
            new, damage = _jsonl_units(uri, cfg, len(units))
            units.extend(new)
            if damage is not None:
                reject_file(uri, new[-1].stop if new else 0, damage)
            continue
        try:
            n = count_records(fmt, uri, cfg)
        except (OSError, pa.ArrowException) as e:  # a footer or schema that does not parse
            reject_file(uri, 0, f"bad_file: cannot read it as {fmt} ({e})")
            continue
        for start in range(0, n, cfg.unit_rows):
            units.append(WorkUnit(len(units), fmt, uri, start, min(n, start + cfg.unit_rows)))
    flush_texts()
    if bad and cfg.on_bad_file == "error":
        raise BadInputFile(bad)
    for uri, why in bad:
        log.warning("rejecting %s: %s", uri, why)
    return units


# --------------------------------------------------------------------------- reading


def _read_table(fmt: str, uri: str, cfg: InputConfig) -> pa.Table:
    import pyarrow.ipc as ipc

    if fmt == "hf" and cfg.hf_builder is not None:
        import datasets

        ds = datasets.load_dataset(cfg.hf_builder, data_files=[uri], split="train",
                                   storage_options=cfg.storage_options or None)
        return ds.data.table
    fs, path, _ = _fs(uri, cfg.storage_options)
    with fs.open(path, "rb") as f:
        data = f.read()
    buf = pa.py_buffer(data)
    try:
        return ipc.open_file(buf).read_all()
    except pa.ArrowInvalid:
        return ipc.open_stream(buf).read_all()


def _doc_id(uri: str, index: int) -> str:
    stem = PurePosixPath(uri).name.split(".")[0]
    return f"{stem}-{xxhash.xxh32_hexdigest(uri.encode())}-{index}"


def _default_source(uri: str, cfg: InputConfig) -> str:
    return cfg.source if cfg.source is not None else PurePosixPath(uri).name.split(".")[0]


class _Rows:
    """Accumulates kept and rejected records of one unit."""

    def __init__(self, unit: WorkUnit, cfg: InputConfig):
        self.unit, self.cfg = unit, cfg
        self.kept: list[dict[str, Any]] = []
        self.rejected: list[dict[str, Any]] = []

    def add(self, row: int, uri: str, line: int, record: Any, raw: str | None = None) -> None:
        cfg = self.cfg
        base = {UNIT: self.unit.name, ROW: row, "source_file": uri, "source_line": line}
        if not isinstance(record, dict):
            return self.reject(base, raw, f"not_an_object: a {type(record).__name__}, expected a JSON object")
        if cfg.rename:
            record = {cfg.rename.get(k, k): v for k, v in record.items()}
        text = record.get(cfg.text_field)
        if text is None:
            return self.reject(base, raw, f"missing_field: {cfg.text_field!r}")
        if not isinstance(text, str):
            return self.reject(base, raw, f"bad_field_type: {cfg.text_field!r} is {type(text).__name__}, not a string")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as e:
            return self.reject(base, raw, f"invalid_utf8: {e.reason} at char {e.start}")
        rid = record.get(cfg.id_field) if cfg.id_field else None
        out = dict(base)
        out["id"] = str(rid) if rid is not None else _doc_id(uri, self.unit.start + row if self.unit.format != "text" else 0)
        out["text"] = text
        src = record.get("source")
        out["source"] = str(src) if src is not None else _default_source(uri, cfg)
        for k, v in record.items():
            if k in (cfg.text_field, cfg.id_field, "source") or k in out:
                continue
            if cfg.fields is None or k in cfg.fields:
                out[k] = v
        self.kept.append(out)

    def reject(self, base: dict[str, Any], raw: str | None, reason: str) -> None:
        self.rejected.append({**base, "id": None, "text": raw, "source": None,
                              REJECT_STAGE: READ_STAGE, REJECT_REASON: reason})

    def tables(self) -> tuple[pa.Table, pa.Table]:
        return _to_table(self.kept, extra=True), _to_table(self.rejected, extra=False)


def _column(values: list[Any]) -> pa.Array:
    """Scalars keep their type; nested or mixed values become JSON strings."""
    kinds = {type(v) for v in values if v is not None}
    if kinds and kinds <= {int, float, bool, str} and len(kinds - {int, float}) <= 1 and not (
        str in kinds and len(kinds) > 1
    ):
        try:
            return pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            pass
    return pa.array([None if v is None else (v if isinstance(v, str) else json.dumps(v, ensure_ascii=False))
                     for v in values], pa.string())


def _to_table(rows: list[dict[str, Any]], *, extra: bool) -> pa.Table:
    cols: dict[str, pa.Array] = {
        "id": pa.array([r["id"] for r in rows], pa.string()),
        "text": pa.array([r["text"] for r in rows], pa.string()),
        "source": pa.array([r["source"] for r in rows], pa.string()),
        "source_file": pa.array([r["source_file"] for r in rows], pa.string()),
        "source_line": pa.array([r["source_line"] for r in rows], pa.int64()),
        UNIT: pa.array([r[UNIT] for r in rows], pa.string()),
        ROW: pa.array([r[ROW] for r in rows], pa.int64()),
    }
    if extra:
        names: dict[str, None] = {}
        for r in rows:
            for k in r:
                if k not in cols:
                    names[k] = None
        for k in names:
            cols[k] = _column([r.get(k) for r in rows])
    else:
        cols[REJECT_STAGE] = pa.array([r[REJECT_STAGE] for r in rows], pa.string())
        cols[REJECT_REASON] = pa.array([r[REJECT_REASON] for r in rows], pa.string())
    return pa.table(cols)


def _lines(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Lines of a stream of byte chunks."""
    rest = b""
    for chunk in chunks:
        parts = (rest + chunk).split(b"\n")
        rest = parts.pop()
        yield from parts
    if rest:
        yield rest


def _iter_jsonl(unit: WorkUnit, cfg: InputConfig) -> Iterator[tuple[int, bytes]]:
    """Lines ``[start, stop)`` of the unit's file, reading only from its member/frame on."""
    codec = compression_of(unit.path)
    with _open_raw(unit.path, cfg.storage_options) as f:
        if codec is None:  # plain: the unit's bytes are at its offset
            f.seek(unit.offset)
            chunks = decoded_chunks(f, None)
            skip = 0
        else:  # start decoding at the member/frame holding the unit's first byte
            f.seek(unit.seek)
            chunks = decoded_chunks(f, codec, offset=unit.seek)
            skip = unit.offset - unit.seek_decoded
        if unit.stop <= unit.start:
            return
        for i, line in enumerate(_lines(_skip(chunks, skip)), start=unit.start):
            yield i, line
            if i + 1 >= unit.stop:  # stop before decoding further: damage may follow
                return


def _skip(chunks: Iterator[bytes], n: int) -> Iterator[bytes]:
    for chunk in chunks:
        if n >= len(chunk):
            n -= len(chunk)
            continue
        yield chunk[n:] if n else chunk
        n = 0


def read_unit(unit: WorkUnit, cfg: InputConfig) -> tuple[pa.Table, pa.Table]:
    """Read one work unit: ``(kept, rejected)`` tables, every record in exactly one of them."""
    rows = _Rows(unit, cfg)
    if unit.format == "jsonl":
        for i, raw in _iter_jsonl(unit, cfg):
            row, line = i - unit.start, i + 1
            base = {UNIT: unit.name, ROW: row, "source_file": unit.path, "source_line": line}
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                rows.reject(base, raw.decode("utf-8", "replace").rstrip("\r\n"),
                            f"invalid_utf8: byte 0x{raw[e.start]:02x} at offset {e.start}")
                continue
            if not text.strip():
                rows.reject(base, text.rstrip("\r\n"), "blank_line")
                continue
            try:
                record = json.loads(text)
            except json.JSONDecodeError as e:
                rows.reject(base, text.rstrip("\r\n"), f"malformed_json: {e.msg} at column {e.colno}")
                continue
            rows.add(row, unit.path, line, record, raw=text.rstrip("\r\n"))
    elif unit.format == "bad":
        base = {UNIT: unit.name, ROW: 0, "source_file": unit.path, "source_line": unit.start + 1 if unit.start else 0}
        rows.reject(base, None, unit.note)
    elif unit.format == "text":
        for row, uri in enumerate(unit.paths):
            base = {UNIT: unit.name, ROW: row, "source_file": uri, "source_line": 0}
            with _open_raw(uri, cfg.storage_options) as f:
                try:
                    data = b"".join(decoded_chunks(f, compression_of(uri)))
                except DamagedStream as e:
                    rows.reject(base, None, f"truncated_or_damaged: {e}")
                    continue
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError as e:
                rows.reject(base, data.decode("utf-8", "replace"),
                            f"invalid_utf8: byte 0x{data[e.start]:02x} at offset {e.start}")
                continue
            rec = {cfg.text_field: text, "id": PurePosixPath(uri).name if cfg.id_field else None}
            if cfg.id_field:
                rec[cfg.id_field] = rec.pop("id")
            rows.add(row, uri, 0, rec)
    elif unit.format in ("parquet", "arrow", "hf"):
        table = _read_range(unit, cfg)
        if cfg.rename:
            table = table.rename_columns([cfg.rename.get(c, c) for c in table.column_names])
        if cfg.text_field not in table.column_names:
            for row in range(table.num_rows):
                base = {UNIT: unit.name, ROW: row, "source_file": unit.path, "source_line": unit.start + row + 1}
                rows.reject(base, None, f"missing_field: {cfg.text_field!r} (columns: {table.column_names})")
        else:
            keep = [c for c in table.column_names if cfg.fields is None or c in cfg.fields
                    or c in (cfg.text_field, cfg.id_field, "source")]
            for row, rec in enumerate(table.select(keep).to_pylist()):
                rows.add(row, unit.path, unit.start + row + 1, rec)
    else:
        raise ConfigError(f"input.format: unsupported format {unit.format!r}")
    return rows.tables()


def _read_range(unit: WorkUnit, cfg: InputConfig) -> pa.Table:
    if unit.format == "parquet":
        import pyarrow.parquet as pq

        fs, path, _ = _fs(unit.path, cfg.storage_options)
        with fs.open(path, "rb") as f:
            pf = pq.ParquetFile(f)
            groups, first, offset = [], None, 0
            for g in range(pf.metadata.num_row_groups):
                n = pf.metadata.row_group(g).num_rows
                if offset + n > unit.start and offset < unit.stop:
                    groups.append(g)
                    first = offset if first is None else first
                offset += n
            table = pf.read_row_groups(groups) if groups else pf.schema_arrow.empty_table()
        return table.slice(unit.start - (first or 0), unit.stop - unit.start)
    return _read_table(unit.format, unit.path, cfg).slice(unit.start, unit.stop - unit.start)
