"""RSDB token shards: Arrow IPC files of tokenized documents plus a ``manifest.json``.

A shard directory holds ``manifest.json`` and ``shard-00000.arrow``, ``shard-00001.arrow``,
... Each shard is an *uncompressed* Arrow IPC **file** (so it can be memory-mapped) with
one row per document and one record batch per file::

    tokens  large_list<uint32>   the document's token ids
    doc_id  string               the caller's document id
    ...     optional small columns (``lang``, ...), null where a document lacks them

The schema metadata carries ``rsdb.format = rsdb-tokens`` and ``rsdb.format_version``.
The manifest lists every shard with its documents, tokens, size in bytes and xxh64
checksum, plus the source name, tokenizer name and vocabulary size.

Validation trade-off. :func:`open_shards` reads only the manifest (O(shards)), checked
by :mod:`rsdb.manifest` (typed fields, distinct paths, totals, its own digest). A shard
file is opened on first use, when its size, Arrow footer, schema, record-batch count
and document/token counts are checked against the manifest, and its offsets are checked
to be non-decreasing and inside the values buffer (a vectorised pass over 8 bytes per
document). The loader's compiled core re-checks each document's bounds when it admits
it and checks token ids against the vocabulary inside its copy loop.

Integrity is on by default (``verify="checksum"``): the first time a shard is mapped,
its xxh64 checksum is computed in a background thread (xxhash releases the GIL and
runs at about 10 GB/s) and must match the manifest before the shard's documents are
handed out; opening shard ``i`` also starts checking shard ``i + 1``, so sequential
readers overlap the check with their work. The cost is reading each shard file once
more (from the page cache when it is warm). ``verify="full"`` (or True) also scans
every token id against the vocabulary when the shard is opened; ``verify="off"`` (or
False) skips the checksum, and then a flipped token byte that keeps every structure
valid goes unnoticed. Truncation is always caught by the size check.
"""

from __future__ import annotations

import bisect
import logging
import os
import threading
from collections.abc import Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal, Union

import numpy as np
import pyarrow as pa

from common.fs import atomic_path

from .errors import ConfigError, ShardError
from .manifest import FORMAT, FORMAT_VERSION, MANIFEST, dump_manifest, load_manifest

__all__ = ["ShardView", "ShardWriter", "TokenShards", "open_shards", "write_shards"]

log = logging.getLogger(__name__)

DEFAULT_SHARD_TOKENS = 1 << 26  # 256 MiB of uint32 tokens per file: few files, cheap to mmap
_TOKEN_TYPES = {pa.uint32(): np.uint32, pa.int32(): np.int32, pa.uint16(): np.uint16}
# The Arrow layout itself is unchanged since version 1 (only the manifest gained a digest).
_SCHEMA_META = {b"rsdb.format": FORMAT.encode(), b"rsdb.format_version": b"1"}

VerifyMode = Literal["off", "checksum", "full"]
Verify = Union[bool, VerifyMode]
DEFAULT_VERIFY: VerifyMode = "checksum"


def verify_mode(verify: Verify) -> VerifyMode:
    """Normalise a ``verify`` argument: True is ``"full"``, False is ``"off"``.

    >>> verify_mode(True), verify_mode(False), verify_mode("checksum")
    ('full', 'off', 'checksum')
    """
    if verify is True:
        return "full"
    if verify is False or verify is None:
        return "off"
    if verify in ("off", "checksum", "full"):
        return verify  # type: ignore[return-value]
    raise ConfigError(f"verify must be 'off', 'checksum', 'full' or a bool, got {verify!r}")


def _xxh64_file(path: Path, chunk: int = 1 << 24) -> str:
    """xxh64 of a file, hashed straight from a read-only memory map.

    Mapping instead of ``read()`` skips a copy per byte (6x faster measured on an 80 MB
    shard set) and leaves the pages in the page cache for the loader's own map. Chunks
    keep each GIL-free ``update`` call bounded.
    """
    import mmap

    import xxhash

    h = xxhash.xxh64()
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            return h.hexdigest()
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
            view = memoryview(m)
            try:
                for start in range(0, size, chunk):
                    h.update(view[start : start + chunk])
            finally:
                view.release()
    return h.hexdigest()


def check_checksum(path: Path, info: Mapping[str, Any]) -> None:
    """Compare ``path``'s checksum with its manifest entry (xxh64, else sha256, else nothing)."""
    p = str(path)
    if info.get("xxh64"):
        got = _xxh64_file(path)
        if got != info["xxh64"]:
            raise ShardError(p, f"xxh64 checksum mismatch: file has {got}, manifest says {info['xxh64']}")
    elif info.get("sha256"):
        import hashlib

        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 24), b""):
                h.update(block)
        if h.hexdigest() != info["sha256"]:
            raise ShardError(p, "sha256 checksum mismatch")


# One background thread checks every shard of the process, in the order they are asked
# for: enough to stay ahead of a training loop, and it never competes with itself for
# the disk. After a fork (DataLoader workers) the child makes its own.
_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def _verifier() -> ThreadPoolExecutor:
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rsdb-verify")
        return _executor


def _reset_after_fork() -> None:
    global _executor, _executor_lock
    _executor, _executor_lock = None, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


class ShardWriter:
    """Write tokenized documents into a shard directory, atomically.

    Each shard file is written under a temporary name and renamed when complete; the
    manifest is written last, so a directory with a ``manifest.json`` is always whole.

    Args:
        out_dir: the shard directory (created).
        source: the source name recorded in the manifest (mixtures refer to it).
        shard_tokens: start a new shard file once this many tokens are buffered.
        tokenizer: tokenizer name recorded in the manifest, or None.
        vocab_size: if given, every token id must be below it (checked on ``add``).

    >>> import tempfile, numpy as np
    >>> d = tempfile.mkdtemp()
    >>> with ShardWriter(d, source="web") as w:
    ...     w.add(np.array([1, 2, 3]), doc_id="a", lang="en")
    ...     w.add([4, 5])
    >>> s = open_shards(d)
    >>> s.num_docs, s.num_tokens, s[1].tolist()
    (2, 5, [4, 5])
    """

    def __init__(
        self,
        out_dir: str | os.PathLike,
        *,
        source: str = "default",
        shard_tokens: int = DEFAULT_SHARD_TOKENS,
        tokenizer: str | None = None,
        vocab_size: int | None = None,
    ):
        if shard_tokens <= 0:
            raise ConfigError(f"shard_tokens must be positive, got {shard_tokens}")
        if vocab_size is not None and not 0 < vocab_size <= 2**31:
            raise ConfigError(f"vocab_size must be in [1, 2**31], got {vocab_size}")
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.source = str(source)
        self.shard_tokens = int(shard_tokens)
        self.tokenizer = tokenizer
        self.vocab_size = vocab_size
        self._shards: list[dict[str, Any]] = []
        self._docs: list[np.ndarray] = []
        self._ids: list[str] = []
        self._cols: dict[str, list[Any]] = {}
        self._buffered = 0
        self._num_docs = 0
        self._num_tokens = 0
        self._closed = False
        self._manifest: dict[str, Any] | None = None

    def add(self, tokens: Any, doc_id: str | None = None, **columns: Any) -> None:
        """Append one document (a 1-D array or sequence of non-negative ints)."""
        if self._closed:
            raise ConfigError(f"{self.out_dir}: ShardWriter is closed")
        arr = np.asarray(tokens)
        if arr.ndim != 1:
            raise ConfigError(f"document {self._num_docs}: tokens must be 1-D, got shape {arr.shape}")
        if arr.size and arr.dtype.kind not in "iu":
            raise ConfigError(f"document {self._num_docs}: tokens must be integers, got dtype {arr.dtype}")
        if arr.size:
            lo, hi = int(arr.min()), int(arr.max())
            limit = self.vocab_size if self.vocab_size is not None else 2**31
            if lo < 0 or hi >= limit:
                bad = lo if lo < 0 else hi
                what = f"vocab_size {self.vocab_size}" if self.vocab_size is not None else "2**31"
                raise ConfigError(f"document {self._num_docs} ({doc_id!r}): token id {bad} outside [0, {what})")
        self._docs.append(arr.astype(np.uint32, copy=False))
        self._ids.append(str(doc_id) if doc_id is not None else f"{self.source}:{self._num_docs}")
        n_buffered = len(self._docs) - 1
        for name, value in columns.items():
            if name in ("tokens", "doc_id"):
                raise ConfigError(f"column name {name!r} is reserved")
            col = self._cols.get(name)
            if col is None:
                col = self._cols[name] = [None] * n_buffered
            col.append(value)
        for name, col in self._cols.items():
            if len(col) == n_buffered:
                col.append(None)
        self._buffered += arr.size
        self._num_docs += 1
        self._num_tokens += int(arr.size)
        if self._buffered >= self.shard_tokens:
            self._flush()

    def _flush(self) -> None:
        if not self._docs:
            return
        lengths = np.fromiter((d.size for d in self._docs), dtype=np.int64, count=len(self._docs))
        offsets = np.zeros(len(self._docs) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        values = np.concatenate(self._docs) if int(offsets[-1]) else np.empty(0, np.uint32)
        arrays = [
            pa.LargeListArray.from_arrays(pa.array(offsets), pa.array(values, type=pa.uint32())),
            pa.array(self._ids, type=pa.string()),
        ]
        names = ["tokens", "doc_id"]
        for name, col in self._cols.items():
            try:
                arrays.append(pa.array(col))
            except (pa.ArrowInvalid, pa.ArrowTypeError):
                arrays.append(pa.array([None if v is None else str(v) for v in col], type=pa.string()))
            names.append(name)
        batch = pa.RecordBatch.from_arrays(arrays, names=names)
        batch = batch.replace_schema_metadata(_SCHEMA_META)
        name = f"shard-{len(self._shards):05d}.arrow"
        path = self.out_dir / name
        with atomic_path(path) as tmp, pa.OSFile(str(tmp), "wb") as sink, \
                pa.ipc.new_file(sink, batch.schema) as writer:
            writer.write_batch(batch)
        self._shards.append({
            "file": name,
            "num_docs": len(self._docs),
            "num_tokens": int(offsets[-1]),
            "bytes": path.stat().st_size,
            "xxh64": _xxh64_file(path),
        })
        self._docs, self._ids, self._cols, self._buffered = [], [], {}, 0

    def close(self) -> dict[str, Any]:
        """Write the last shard and the manifest; returns the manifest (idempotent)."""
        if self._closed:
            assert self._manifest is not None
            return self._manifest
        self._flush()
        self._manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "source": self.source,
            "tokenizer": self.tokenizer,
            "vocab_size": self.vocab_size,
            "dtype": "uint32",
            "num_docs": self._num_docs,
            "num_tokens": self._num_tokens,
            "tokens_per_source": {self.source: self._num_tokens},
            "shards": self._shards,
            "extra": {},
        }
        self._manifest = dump_manifest(self.out_dir, self._manifest)
        self._closed = True
        return self._manifest

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()


def write_shards(
    out_dir: str | os.PathLike,
    docs: Iterable[Any],
    *,
    source: str = "default",
    shard_tokens: int = DEFAULT_SHARD_TOKENS,
    doc_ids: Iterable[str] | None = None,
    tokenizer: str | None = None,
    vocab_size: int | None = None,
) -> dict[str, Any]:
    """Write an iterable of 1-D integer arrays as a shard directory; returns the manifest.

    >>> import tempfile
    >>> m = write_shards(tempfile.mkdtemp(), [[1, 2], [3]], source="s", shard_tokens=2)
    >>> m["num_docs"], m["num_tokens"], len(m["shards"])
    (2, 3, 2)
    """
    ids = iter(doc_ids) if doc_ids is not None else None
    with ShardWriter(out_dir, source=source, shard_tokens=shard_tokens, tokenizer=tokenizer,
                     vocab_size=vocab_size) as w:
        for i, doc in enumerate(docs):
            doc_id = None
            if ids is not None:
                doc_id = next(ids, None)
                if doc_id is None:
                    raise ConfigError(f"doc_ids ran out at document {i}: give one id per document")
            w.add(doc, doc_id=doc_id)
    return w.close()


class DocumentSequence:
    """Documents of a shard view as a sequence: ``len()`` and ``view[i]`` (a token array).

    Mixed into every shard view; needs ``num_docs``, ``offsets`` and ``tokens``.
    """

    num_docs: int
    offsets: np.ndarray
    tokens: np.ndarray

    def __len__(self) -> int:
        return self.num_docs

    def __getitem__(self, i: int) -> np.ndarray:
        """Tokens of document ``i`` (a view into the memory map)."""
        if not -self.num_docs <= i < self.num_docs:
            raise IndexError(f"document {i} out of range for {self.num_docs} documents")
        i %= self.num_docs
        return self.tokens[self.offsets[i] : self.offsets[i + 1]]


class ShardView(DocumentSequence):
    """One opened shard file: zero-copy numpy views of its Arrow buffers.

    Implements the shard-view protocol the loader consumes: ``path``, ``offsets``
    (int64, ``num_docs + 1``), ``tokens`` (uint32), ``num_docs``, ``num_tokens``.
    ``vocab_size`` is the bound token ids must respect (None: unknown).
    """

    def __init__(self, path: str, offsets: np.ndarray, tokens: np.ndarray, table: pa.Table | pa.RecordBatch,
                 vocab_size: int | None):
        self.path = path
        self.offsets = offsets
        self.tokens = tokens
        self.vocab_size = vocab_size
        self.num_docs = int(offsets.shape[0] - 1)
        self.num_tokens = int(offsets[-1] - offsets[0]) if self.num_docs else 0
        self._table = table  # keeps the memory map alive

    def doc_ids(self) -> list[str]:
        return self._table.column("doc_id").to_pylist()

    def column(self, name: str) -> list[Any]:
        return self._table.column(name).to_pylist()

    def validate(self) -> None:
        """Full check (reads offsets and tokens): monotonic offsets, ids below vocab_size."""
        off = self.offsets
        if self.num_docs and bool(np.any(off[1:] < off[:-1])):
            i = int(np.argmax(off[1:] < off[:-1]))
            raise ShardError(self.path, f"offsets decrease at document {i} ({int(off[i])} -> {int(off[i + 1])})")
        if self.num_docs and self.num_tokens:
            used = self.tokens[int(off[0]) : int(off[-1])]
            hi = int(used.max())
            limit = self.vocab_size if self.vocab_size is not None else 2**31
            if hi >= limit:
                pos = int(np.argmax(used >= limit)) + int(off[0])
                doc = int(np.searchsorted(off, pos, side="right")) - 1
                raise ShardError(self.path, f"token id {hi} >= {limit} (vocab_size) in document {doc}")

    def __repr__(self) -> str:
        return f"ShardView({self.path!r}, num_docs={self.num_docs}, num_tokens={self.num_tokens})"


def _check_size(path: Path, info: Mapping[str, Any]) -> None:
    p = str(path)
    if not path.is_file():
        raise ShardError(p, "shard file listed in the manifest is missing")
    size = path.stat().st_size
    if info.get("bytes") is not None and size != int(info["bytes"]):
        raise ShardError(p, f"size is {size} bytes but the manifest says {int(info['bytes'])}: truncated or rewritten")


def _open_view(path: Path, info: Mapping[str, Any], vocab_size: int | None, verify: Verify,
               checksummed: bool = False) -> ShardView:
    """Open one shard file and check its structure against its manifest entry.

    ``verify``: ``"off"``/False structure only; ``"checksum"`` also the file's checksum
    (unless ``checksummed``: the caller already compared it); ``"full"``/True also every
    token id against ``vocab_size``.
    """
    p = str(path)
    mode = verify_mode(verify)
    _check_size(path, info)
    if mode != "off" and not checksummed:
        check_checksum(path, info)
    try:
        source = pa.memory_map(p, "r")
        reader = pa.ipc.open_file(source)
        schema = reader.schema
        n_batches = reader.num_record_batches
        meta = schema.metadata or {}
        names = schema.names
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise ShardError(p, f"not a readable Arrow IPC file (bad magic, footer or schema): {exc}") from None
    if meta.get(b"rsdb.format") not in (None, FORMAT.encode()):
        raise ShardError(p, f"schema metadata says format {meta.get(b'rsdb.format')!r}, expected {FORMAT!r}")
    if "tokens" not in names:
        raise ShardError(p, f"no 'tokens' column; columns are {names}")
    ttype = schema.field("tokens").type
    if not (pa.types.is_large_list(ttype) and ttype.value_type in _TOKEN_TYPES):
        raise ShardError(p, f"'tokens' has type {ttype}; expected large_list<uint32> (or int32/uint16 values)")
    if "doc_id" in names and not (pa.types.is_string(schema.field("doc_id").type)
                                  or pa.types.is_large_string(schema.field("doc_id").type)):
        raise ShardError(p, f"'doc_id' has type {schema.field('doc_id').type}; expected string")
    try:
        if n_batches == 1:
            table: pa.Table | pa.RecordBatch = reader.get_batch(0)
        else:
            if n_batches > 1:
                log.warning("%s: %d record batches; combining them in memory (rsdb writes one)", p, n_batches)
            table = reader.read_all().combine_chunks()
        table.validate(full=False)
        col = table.column("tokens")
        if isinstance(col, pa.ChunkedArray):
            col = col.chunks[0] if col.num_chunks else pa.array([], type=ttype)
        if col.null_count:
            raise ShardError(p, f"'tokens' has {col.null_count} null rows")
        n = len(col)
        bufs = col.buffers()
        obuf = bufs[1]
        vbuf = bufs[3] if len(bufs) > 3 else None
    except ShardError:
        raise
    except (pa.ArrowException, OSError, ValueError, IndexError) as exc:
        raise ShardError(p, f"corrupt record batch: {exc}") from None
    dtype = np.dtype(_TOKEN_TYPES[ttype.value_type])
    if obuf is None or obuf.size < 8 * (col.offset + n + 1):
        raise ShardError(p, "offsets buffer missing or shorter than the row count needs")
    offsets = np.frombuffer(obuf, dtype=np.int64, count=n + 1, offset=8 * col.offset)
    nvals = (vbuf.size // dtype.itemsize) if vbuf is not None else 0
    tokens = np.frombuffer(vbuf, dtype=dtype, count=nvals) if nvals else np.empty(0, dtype)
    first, last = int(offsets[0]), int(offsets[-1])
    if first < 0 or last < first or last > nvals:
        raise ShardError(p, f"offsets span [{first}, {last}) outside the values buffer of {nvals} tokens")
    if first:
        # Legal Arrow (a sliced list written as is): rebase to 0 so every consumer (the
        # compiled core included) sees offsets that index ``tokens`` from its start.
        offsets = offsets - first
        offsets.setflags(write=False)
        tokens = tokens[first:last]
        last, first = last - first, 0
    if "num_docs" in info and n != int(info["num_docs"]):
        raise ShardError(p, f"holds {n} documents but the manifest says {int(info['num_docs'])}")
    if "num_tokens" in info and last - first != int(info["num_tokens"]):
        raise ShardError(p, f"holds {last - first} tokens but the manifest says {int(info['num_tokens'])}")
    if n and bool(np.any(offsets[1:] < offsets[:-1])):
        i = int(np.argmax(offsets[1:] < offsets[:-1]))
        raise ShardError(p, f"offsets decrease at document {i} ({int(offsets[i])} -> {int(offsets[i + 1])})")
    view = ShardView(p, offsets, tokens, table, vocab_size)
    if mode == "full":
        view.validate()
    return view


class TokenShards:
    """A validated shard directory: its manifest and lazily opened shard files.

    Build it with :func:`open_shards`. ``views()`` opens (and caches) every shard;
    ``view(i)`` opens one. Indexing (``shards[i]``) returns a document's tokens.
    """

    def __init__(self, path: Path, manifest: dict[str, Any], verify: Verify = DEFAULT_VERIFY):
        self.path = str(path)
        self.dir = path
        self.manifest = manifest
        self.verify: VerifyMode = verify_mode(verify)
        self.source: str = str(manifest["source"])
        self.tokenizer: str | None = manifest.get("tokenizer")
        self.vocab_size: int | None = manifest.get("vocab_size")
        self.shards: list[dict[str, Any]] = list(manifest["shards"])
        self.num_docs: int = int(manifest["num_docs"])
        self.num_tokens: int = int(manifest["num_tokens"])
        self.docs_per_shard = [int(s["num_docs"]) for s in self.shards]
        self.tokens_per_shard = [int(s["num_tokens"]) for s in self.shards]
        self._doc_starts = np.concatenate([[0], np.cumsum(self.docs_per_shard, dtype=np.int64)]).tolist()
        self._views: dict[int, ShardView] = {}
        self._checks: dict[int, Future] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return self.num_docs

    @property
    def num_shards(self) -> int:
        return len(self.shards)

    def shard_path(self, i: int) -> Path:
        return self.dir / self.shards[i]["file"]

    def __getstate__(self) -> dict[str, Any]:
        # Opened views (memory maps), pending checks and the lock stay with this process.
        return {k: v for k, v in self.__dict__.items() if k not in ("_views", "_checks", "_lock")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, _views={}, _checks={}, _lock=threading.Lock())

    def prefetch(self, i: int) -> None:
        """Start checking shard ``i``'s size and checksum in the background (no-op if started or off)."""
        self._check_future(i)

    def _check_future(self, i: int) -> Future | None:
        if self.verify == "off" or not 0 <= i < self.num_shards:
            return None
        with self._lock:
            fut = self._checks.get(i)
            if fut is None:
                path, info = self.shard_path(i), self.shards[i]
                fut = self._checks[i] = _verifier().submit(lambda: (_check_size(path, info),
                                                                    check_checksum(path, info)))
            return fut

    def view(self, i: int) -> ShardView:
        """Open (once) and return shard ``i`` as a :class:`ShardView`.

        Unless ``verify="off"``, waits for the shard's checksum (computed in the
        background thread) first, and starts checking shard ``i + 1``.
        """
        v = self._views.get(i)
        if v is None:
            fut = self._check_future(i)
            self._check_future(i + 1)  # read-ahead: sequential readers never wait twice
            if fut is not None:
                fut.result()  # re-raises the ShardError of a bad shard, here, before any document is used
            v = self._views[i] = _open_view(self.shard_path(i), self.shards[i], self.vocab_size, self.verify,
                                            checksummed=fut is not None)
        return v

    def views(self) -> list[ShardView]:
        return [self.view(i) for i in range(self.num_shards)]

    def __getitem__(self, i: int) -> np.ndarray:
        if not -self.num_docs <= i < self.num_docs:
            raise IndexError(f"document {i} out of range for {self.num_docs} documents")
        i %= self.num_docs
        s = bisect.bisect_right(self._doc_starts, i) - 1
        return self.view(s)[i - self._doc_starts[s]]

    def __iter__(self):
        for s in range(self.num_shards):
            v = self.view(s)
            for i in range(v.num_docs):
                yield v[i]

    def validate(self, verify: Verify = True) -> None:
        """Open every shard and scan its offsets and token range; with ``verify``, also checksum it."""
        for i in range(self.num_shards):
            v = _open_view(self.shard_path(i), self.shards[i], self.vocab_size, verify)
            if verify_mode(verify) != "full":
                v.validate()

    def __repr__(self) -> str:
        return (f"TokenShards({self.path!r}, source={self.source!r}, shards={self.num_shards}, "
                f"num_docs={self.num_docs}, num_tokens={self.num_tokens})")


def _check_manifest(mpath: Path, m: Any) -> None:
    """Raise ShardError if ``m`` (parsed JSON) is not a valid manifest (see :mod:`rsdb.manifest`)."""
    from .manifest import _check

    _check(mpath, m, require_digest=True)


def open_shards(path: str | os.PathLike, *, verify: Verify = DEFAULT_VERIFY) -> TokenShards:
    """Open a shard directory (or its ``manifest.json``) and validate the manifest.

    Args:
        path: the shard directory or its manifest file.
        verify: ``"checksum"`` (default): each shard's xxh64 is checked, in a background
            thread, the first time the shard is opened and before any of its documents
            is returned. ``"full"`` (or True): also scan its token ids against the
            vocabulary. ``"off"`` (or False): structure checks only.

    Raises:
        ShardError: naming the file and the problem.
    """
    mode = verify_mode(verify)
    path = Path(path)
    if path.name == MANIFEST:
        path = path.parent
    manifest = load_manifest(path).model_dump(exclude_unset=True)
    return TokenShards(path, manifest, verify=mode)
