"""Read (and write) Megatron-LM / NeMo indexed datasets: ``prefix.bin`` + ``prefix.idx``.

Most existing tokenized pretraining data sits in this format, so RSDB reads it in
place: :func:`open_megatron` memory-maps both files and returns a shard view with the
same protocol as an Arrow token shard (``path``, ``offsets``, ``tokens``,
``num_docs``, ``num_tokens``), which the loader consumes without copying a token.

The index (``.idx``, format "MMIDIDX", version 1), all little-endian::

    magic           9 bytes   b"MMIDIDX\\x00\\x00"
    version         uint64    1
    dtype code      uint8     1 uint8, 2 int8, 3 int16, 4 int32, 5 int64,
                              6 float64, 7 float32, 8 uint16
    n_sequences     uint64    S
    n_doc_index     uint64    D  (= documents + 1)
    sequence sizes  int32[S]  tokens per sequence
    pointers        int64[S]  byte offset of each sequence in ``.bin``
    document index  int64[D]  first sequence of each document, then S
    (sequence modes int8[S]   only in multimodal indexes; ignored here)

``.bin`` is the sequences' tokens back to back. A *document* here is what the
document index groups (one sequence per document for GPT-style data; several
"sentences" for BERT-style data), so ``offsets`` are token offsets of document starts.

Trade-off: opening validates the whole *index* (O(sequences), vectorised, a few ms per
million documents): sizes non-negative, ``pointers[i+1] - pointers[i] == sizes[i] *
itemsize`` with the sequences back to back inside the ``.bin``, the ``.bin`` exactly as
long as the index says, ``document_index`` strictly increasing from 0 to the sequence
count. Token ids themselves are not range-checked at open (the loader's core checks them
against the vocabulary as it copies).

The format has no checksum of its own, so RSDB keeps one in a sidecar,
``prefix.rsdb.json`` (sizes and xxh64 of both files). :func:`write_megatron` writes it;
:func:`open_megatron` checks it when present (in a background thread; the first access
to ``tokens`` waits for the result, so no token is used unchecked) and, when absent,
records it after the first open (trust on first use: it guards later reads, it cannot
vouch for the first). ``verify="off"`` skips both.

The loader consumes uint16, int32 and uint32 tokens; Megatron has no uint32 code, so
files with dtype codes other than uint16 (8) and int32 (4) are rejected with a
:class:`~rsdb.errors.ShardError` that says so.
"""

from __future__ import annotations

import json
import logging
import os
import struct
from collections.abc import Iterable
from concurrent.futures import Future
from pathlib import Path

import numpy as np

from common.fs import atomic_write

from .errors import ConfigError, ShardError
from .shards import DEFAULT_VERIFY, DocumentSequence, Verify, _verifier, _xxh64_file, verify_mode

__all__ = ["MegatronShard", "open_megatron", "sidecar_path", "write_megatron", "write_sidecar"]

log = logging.getLogger(__name__)

MAGIC = b"MMIDIDX\x00\x00"
SIDECAR_FORMAT = "rsdb-megatron-checksums"
VERSION = 1
_HEADER = struct.Struct("<9sQBQQ")  # magic, version, dtype code, S, D  (34 bytes)

# Codes of Megatron-core's DType enum.
DTYPE_CODES: dict[int, np.dtype] = {
    1: np.dtype(np.uint8),
    2: np.dtype(np.int8),
    3: np.dtype(np.int16),
    4: np.dtype(np.int32),
    5: np.dtype(np.int64),
    6: np.dtype(np.float64),
    7: np.dtype(np.float32),
    8: np.dtype(np.uint16),
}
_CODE_OF = {dt: code for code, dt in DTYPE_CODES.items()}
# Token dtypes the RSDB core reads without a copy (and that Megatron can express).
SUPPORTED_DTYPES = (np.dtype(np.uint16), np.dtype(np.int32))


def _paths(prefix: str | os.PathLike) -> tuple[str, Path, Path]:
    p = os.fspath(prefix)
    for ext in (".bin", ".idx"):
        if p.endswith(ext):
            p = p[: -len(ext)]
    return p, Path(p + ".bin"), Path(p + ".idx")


def sidecar_path(prefix: str | os.PathLike) -> Path:
    """Where the checksum sidecar of a Megatron dataset lives: ``prefix.rsdb.json``."""
    return Path(_paths(prefix)[0] + ".rsdb.json")


def _sums(bin_path: Path, idx_path: Path) -> dict:
    return {"format": SIDECAR_FORMAT, "version": 1,
            "bin_bytes": bin_path.stat().st_size, "bin_xxh64": _xxh64_file(bin_path),
            "idx_bytes": idx_path.stat().st_size, "idx_xxh64": _xxh64_file(idx_path)}


def write_sidecar(prefix: str | os.PathLike) -> dict:
    """Checksum ``prefix.bin``/``.idx`` and write ``prefix.rsdb.json`` atomically; returns it."""
    _, bin_path, idx_path = _paths(prefix)
    sums = _sums(bin_path, idx_path)
    side = sidecar_path(prefix)
    atomic_write(side, json.dumps(sums, indent=2))
    return sums


def _read_sidecar(side: Path) -> dict | None:
    if not side.is_file():
        return None
    try:
        d = json.loads(side.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise ShardError(str(side), f"checksum sidecar is not valid JSON: {exc}") from None
    keys = {"bin_bytes": int, "idx_bytes": int, "bin_xxh64": str, "idx_xxh64": str}
    if not isinstance(d, dict) or d.get("format") != SIDECAR_FORMAT or type(d.get("version")) is not int \
            or d["version"] != 1:
        raise ShardError(str(side), f"not an RSDB checksum sidecar (format {SIDECAR_FORMAT!r}, version 1)")
    for k, t in keys.items():
        if type(d.get(k)) is not t:
            raise ShardError(str(side), f"field {k!r} must be {t.__name__}, got {d.get(k)!r}")
    return d


def _check_sidecar(side: Path, want: dict, bin_path: Path, idx_path: Path) -> None:
    for f, which in ((bin_path, "bin"), (idx_path, "idx")):
        got = _xxh64_file(f)
        if got != want[f"{which}_xxh64"]:
            raise ShardError(str(f), f"xxh64 checksum mismatch: file has {got}, {side.name} says "
                                     f"{want[f'{which}_xxh64']} (corrupt or rewritten)")


def _record_sidecar(prefix: str) -> None:
    try:
        write_sidecar(prefix)
    except OSError as exc:  # a read-only dataset: nothing to record, nothing wrong
        log.info("%s: could not write checksum sidecar (%s)", prefix, exc)


class MegatronShard(DocumentSequence):
    """A validated, memory-mapped Megatron indexed dataset (one ``.bin``/``.idx`` pair).

    Implements the RSDB shard-view protocol. Build it with :func:`open_megatron`.

    Attributes:
        path: the dataset prefix (without ``.bin``/``.idx``).
        offsets: int64 array of ``num_docs + 1`` token offsets; document ``i`` is
            ``tokens[offsets[i]:offsets[i + 1]]``.
        tokens: the ``.bin`` file as a read-only memory map, in the file's dtype.
        sequence_lengths: int32 tokens per sequence, as stored in the index.
        document_index: int64 first sequence of each document, then ``n_sequences``.
        num_docs, num_tokens, num_sequences: counts.
    """

    def __init__(self, path, offsets, tokens, sequence_lengths, document_index, check: Future | None = None):
        self.path = path
        self.offsets = offsets
        self._tokens = tokens
        self._check = check
        self.sequence_lengths = sequence_lengths
        self.document_index = document_index
        self.num_docs = int(offsets.shape[0] - 1)
        self.num_tokens = int(offsets[-1])
        self.num_sequences = int(sequence_lengths.shape[0])

    @property
    def tokens(self) -> np.ndarray:
        """The ``.bin`` tokens; the first access waits for the background checksum (ShardError if bad)."""
        if self._check is not None:
            self._check.result()
            self._check = None
        return self._tokens

    @property
    def dtype(self) -> np.dtype:
        return self._tokens.dtype

    def __repr__(self) -> str:
        return (
            f"MegatronShard({self.path!r}, num_docs={self.num_docs}, "
            f"num_tokens={self.num_tokens}, dtype={self.dtype})"
        )


def open_megatron(prefix: str | os.PathLike, *, verify: Verify = DEFAULT_VERIFY) -> MegatronShard:
    """Open and validate a Megatron-LM/NeMo indexed dataset.

    Args:
        prefix: path without extension (``data/wiki_text_document`` for
            ``data/wiki_text_document.bin`` + ``.idx``); a path ending in ``.bin`` or
            ``.idx`` is accepted too.
        verify: ``"checksum"`` (default) or ``"full"``: check the ``prefix.rsdb.json``
            sidecar in the background if there is one (record it if not); ``"off"``:
            index checks only.

    Returns:
        A :class:`MegatronShard` (shard-view protocol; zero copy).

    Raises:
        ShardError: a file is missing, truncated, or inconsistent; the message names
            the file and the problem.

    >>> import tempfile, numpy as np
    >>> d = tempfile.mkdtemp()
    >>> _ = write_megatron(f"{d}/x", [np.array([5, 6, 7]), np.array([8])], dtype=np.uint16)
    >>> s = open_megatron(f"{d}/x")
    >>> s.num_docs, s.num_tokens, s[1].tolist()
    (2, 4, [8])
    """
    mode = verify_mode(verify)
    p, bin_path, idx_path = _paths(prefix)
    for f in (idx_path, bin_path):
        if not f.is_file():
            raise ShardError(str(f), "file not found (a Megatron dataset needs both .bin and .idx)")
    idx_size = idx_path.stat().st_size
    bin_size = bin_path.stat().st_size
    if idx_size < _HEADER.size:
        raise ShardError(str(idx_path), f"truncated: {idx_size} bytes, shorter than the {_HEADER.size}-byte header")
    with open(idx_path, "rb") as fh:
        magic, version, code, n_seq, n_doc_idx = _HEADER.unpack(fh.read(_HEADER.size))
    if magic != MAGIC:
        raise ShardError(str(idx_path), f"bad magic {magic!r}; expected {MAGIC!r} (not a Megatron MMIDIDX index)")
    if version != VERSION:
        raise ShardError(str(idx_path), f"unsupported index version {version}; expected {VERSION}")
    if code not in DTYPE_CODES:
        raise ShardError(str(idx_path), f"unknown dtype code {code}; known codes are {sorted(DTYPE_CODES)}")
    dtype = DTYPE_CODES[code]
    if dtype not in SUPPORTED_DTYPES:
        raise ShardError(
            str(idx_path),
            f"token dtype {dtype} (code {code}) is not supported; RSDB reads uint16 (code 8) "
            "and int32 (code 4): re-export the dataset with one of those",
        )
    if n_doc_idx < 1:
        raise ShardError(str(idx_path), "document index is empty; it must hold at least the final entry")
    body = 4 * n_seq + 8 * n_seq + 8 * n_doc_idx
    expected = _HEADER.size + body
    # Multimodal indexes append one int8 "mode" per sequence; RSDB ignores it.
    if idx_size not in (expected, expected + n_seq):
        raise ShardError(
            str(idx_path),
            f"size {idx_size} bytes does not match its header ({n_seq} sequences, {n_doc_idx} "
            f"document-index entries need {expected} bytes): truncated or corrupt",
        )

    idx = np.memmap(idx_path, dtype=np.uint8, mode="r") if idx_size else np.empty(0, np.uint8)
    o = _HEADER.size
    sizes = np.frombuffer(idx, dtype="<i4", count=n_seq, offset=o)
    o += 4 * n_seq
    pointers = np.frombuffer(idx, dtype="<i8", count=n_seq, offset=o)
    o += 8 * n_seq
    doc_index = np.frombuffer(idx, dtype="<i8", count=n_doc_idx, offset=o)

    itemsize = dtype.itemsize
    if n_seq and int(sizes.min()) < 0:
        bad = int(np.argmax(sizes < 0))
        raise ShardError(str(idx_path), f"sequence {bad} has negative length {int(sizes[bad])}")
    seq_offsets = np.zeros(n_seq + 1, dtype=np.int64)
    np.cumsum(sizes, out=seq_offsets[1:])
    # RSDB reads documents as contiguous token ranges, so sequences must lie back to
    # back in order, which is how every Megatron/NeMo builder writes them.
    expected_ptr = seq_offsets[:-1] * itemsize
    if not np.array_equal(pointers, expected_ptr):
        bad = int(np.argmax(pointers != expected_ptr))
        raise ShardError(
            str(idx_path),
            f"sequence {bad} starts at byte {int(pointers[bad])} but the sizes before it put it at "
            f"{int(expected_ptr[bad])}: pointers are inconsistent with sizes (corrupt index)",
        )
    total_bytes = int(seq_offsets[-1]) * itemsize
    if bin_size != total_bytes:
        what = "truncated" if bin_size < total_bytes else "longer than its index says"
        raise ShardError(
            str(bin_path),
            f"{what}: {bin_size} bytes, but the index describes {int(seq_offsets[-1])} "
            f"{dtype} tokens = {total_bytes} bytes",
        )
    if int(doc_index[0]) != 0 or int(doc_index[-1]) != n_seq:
        raise ShardError(
            str(idx_path),
            f"document index must start at 0 and end at the sequence count {n_seq}; "
            f"got {int(doc_index[0])} .. {int(doc_index[-1])}",
        )
    # Strictly increasing: a repeated entry would be an empty document (Megatron's builders
    # never write one) and is the signature of an edited index.
    if n_doc_idx > 1 and bool(np.any(np.diff(doc_index) <= 0)):
        bad = int(np.argmax(np.diff(doc_index) <= 0))
        raise ShardError(str(idx_path), f"document index decreases or repeats at entry {bad + 1} "
                                        f"({int(doc_index[bad])} -> {int(doc_index[bad + 1])}); it must be "
                                        "strictly increasing")

    offsets = np.ascontiguousarray(seq_offsets[doc_index])
    offsets.setflags(write=False)
    if total_bytes:
        tokens = np.memmap(bin_path, dtype=dtype.newbyteorder("<"), mode="r", shape=(total_bytes // itemsize,))
    else:
        tokens = np.empty(0, dtype=dtype)
    # The sidecar comes after the structural checks: they name what is wrong more precisely.
    side = sidecar_path(p)
    sums = _read_sidecar(side) if mode != "off" else None
    if sums is not None:
        for f, size, which in ((bin_path, bin_size, "bin"), (idx_path, idx_size, "idx")):
            if size != sums[f"{which}_bytes"]:
                raise ShardError(str(f), f"size is {size} bytes but {side.name} says {sums[f'{which}_bytes']}: "
                                         "truncated or rewritten")
    check: Future | None = None
    if sums is not None:
        check = _verifier().submit(_check_sidecar, side, sums, bin_path, idx_path)
    elif mode != "off":
        check = _verifier().submit(_record_sidecar, p)
    return MegatronShard(p, offsets, tokens, sizes, doc_index, check)


def write_megatron(
    prefix: str | os.PathLike,
    docs: Iterable,
    dtype=np.uint16,
) -> dict:
    """Write documents as a Megatron indexed dataset (one sequence per document).

    Files are written to temporary names and renamed into place, so a reader never
    sees a half-written dataset.

    Args:
        prefix: output path without extension; ``prefix.bin`` and ``prefix.idx`` are
            created (parent folders too).
        docs: iterable of 1-D integer arrays (or lists), one per document.
        dtype: ``np.uint16`` (vocabularies up to 65,536) or ``np.int32``.

    Returns:
        ``{"prefix", "num_docs", "num_tokens", "dtype"}``.

    Raises:
        ConfigError: unsupported dtype, or a document that is not 1-D integers or
            holds ids that do not fit the dtype (the message names the document).
    """
    dt = np.dtype(dtype)
    if dt not in SUPPORTED_DTYPES:
        raise ConfigError(f"write_megatron: dtype must be uint16 or int32, got {dt}")
    p, bin_path, idx_path = _paths(prefix)
    bin_path.parent.mkdir(parents=True, exist_ok=True)
    info = np.iinfo(dt)
    sizes: list[int] = []
    tmp_bin = bin_path.with_name(bin_path.name + ".tmp")
    tmp_idx = idx_path.with_name(idx_path.name + ".tmp")
    try:
        with open(tmp_bin, "wb") as fb:
            for i, doc in enumerate(docs):
                a = np.asarray(doc)
                if a.ndim != 1 or (a.size and a.dtype.kind not in "iu"):
                    raise ConfigError(f"write_megatron: document {i} must be a 1-D integer array, got {a.dtype} {a.shape}")
                if a.size and (int(a.min()) < info.min or int(a.max()) > info.max):
                    raise ConfigError(
                        f"write_megatron: document {i} has token ids outside {dt} range "
                        f"[{info.min}, {info.max}]: min {int(a.min())}, max {int(a.max())}"
                    )
                if a.size > np.iinfo(np.int32).max:
                    raise ConfigError(f"write_megatron: document {i} is longer than 2**31-1 tokens")
                fb.write(np.ascontiguousarray(a, dtype=dt.newbyteorder("<")).tobytes())
                sizes.append(a.size)
        n = len(sizes)
        size_arr = np.asarray(sizes, dtype="<i4")
        offs = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(size_arr, out=offs[1:])
        with open(tmp_idx, "wb") as fi:
            fi.write(_HEADER.pack(MAGIC, VERSION, _CODE_OF[dt], n, n + 1))
            fi.write(size_arr.tobytes())
            fi.write((offs[:-1] * dt.itemsize).astype("<i8").tobytes())
            fi.write(np.arange(n + 1, dtype="<i8").tobytes())
        os.replace(tmp_bin, bin_path)
        os.replace(tmp_idx, idx_path)
        write_sidecar(p)
    finally:
        for t in (tmp_bin, tmp_idx):
            if t.exists():
                t.unlink()
    return {"prefix": p, "num_docs": n, "num_tokens": int(offs[-1]), "dtype": str(dt)}
