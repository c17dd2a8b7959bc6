"""The RSDB loader: phase-mixed, exactly-once, resumable batches from token shards.

:class:`RSDBLoader` validates its arguments, opens the sources' manifests (never their
data), splits every source's documents into disjoint per-(rank, worker) streams and
drives the compiled core (``rsdb._core``), which fills preallocated numpy arrays with
the GIL released. See ``docs/rsdb.md`` for the algorithm and the resume semantics.

Trade-off: shard files are opened lazily, the first time the core needs one of their
documents, so start-up cost depends on the number of shard files listed in the
manifests, not on tokens or documents. Finite-epoch mode (``epochs=N``) is the
exception: it opens every shard up front to count each stream's tokens exactly (two
offset reads per shard and stream, no token scan), so that every rank and worker can
be told the same number of batches.
"""

from __future__ import annotations

import bisect
import logging
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Optional, Union

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

try:
    from . import _core
except ImportError as e:  # a source checkout whose extension was never built
    raise ImportError(
        "rsdb's compiled core (rsdb._core) is not built; build it with "
        "`pip install --no-build-isolation -e .` from the repository root"
    ) from e
from common.config import validation_message

from .errors import ConfigError, LoaderError, ShardError
from .schedule import ScheduleEntry, StepClock, coerce_schedule

__all__ = ["Phase", "RSDBLoader", "FIELDS"]

log = logging.getLogger(__name__)

FIELDS = ("tokens", "loss_mask", "position_ids", "doc_ids", "source_ids", "cu_seqlens")
_DTYPE_CODE = {np.dtype(np.uint32): _core.DType.U32, np.dtype(np.int32): _core.DType.I32,
               np.dtype(np.uint16): _core.DType.U16}
_Status = _core.Status
STATE_FORMAT = "rsdb-loader-state"
#: RSDBLoader arguments passed on to rsdb.remote (the others: LoaderConfig, phases, schedule).
_REMOTE_ARGS = ("storage_options", "cache_dir", "max_cache_bytes", "remote")
_FILL_ORDER = ("tokens", "position_ids", "doc_ids", "source_ids", "loss_mask", "_cu", "_n_segments")
# doc_ids are int32 unless a source holds more documents than that can number.
_DOC_ID32_MAX = 2**31 - 1
_MAX_SOURCES = 2**15 - 1  # source_ids are int16 (-1 marks padding)
# populate="pool": bytes of shard mapped per madvise call (see RSDBLoader, docs/rsdb.md).
POPULATE_WINDOW = 2 << 20


@dataclass
class Phase:
    """One phase of a training schedule: a global token budget and source weights.

    Args:
        tokens: training tokens of this phase summed over all ranks
            (``batch_size * seq_len * world_size`` per step).
        weights: source name -> non-negative weight (normalised per phase).
        name: shown in stats; defaults to ``phase1``, ``phase2``, ...
        batch_size, seq_len: if set, the batch shape from this phase's first step on
            (a schedule entry at the phase's starting token count).

    >>> Phase(10**12, {"web": 0.7, "code": 0.3}, name="pretrain").shares()
    {'web': 0.7, 'code': 0.3}
    """

    tokens: int
    weights: dict[str, float]
    name: Optional[str] = None
    batch_size: Optional[int] = None
    seq_len: Optional[int] = None

    def __post_init__(self) -> None:
        if not isinstance(self.tokens, (int, np.integer)) or self.tokens <= 0:
            raise ConfigError(f"Phase {self.name or ''}: tokens must be a positive int, got {self.tokens!r}")
        if not isinstance(self.weights, Mapping) or not self.weights:
            raise ConfigError(f"Phase {self.name or ''}: weights must be a non-empty mapping")
        for k, v in self.weights.items():
            if not isinstance(v, (int, float)) or v < 0 or v != v:
                raise ConfigError(f"Phase {self.name or ''}: weight of {k!r} must be a number >= 0, got {v!r}")
        if sum(self.weights.values()) <= 0:
            raise ConfigError(f"Phase {self.name or ''}: weights sum to zero")
        self.tokens = int(self.tokens)
        self.weights = {str(k): float(v) for k, v in self.weights.items()}

    def shares(self) -> dict[str, float]:
        total = sum(self.weights.values())
        return {k: v / total for k, v in self.weights.items()}

    @classmethod
    def coerce(cls, p: Any) -> "Phase":
        if isinstance(p, Phase):
            return p
        if isinstance(p, Mapping):
            unknown = set(p) - {"tokens", "weights", "name", "batch_size", "seq_len"}
            if unknown:
                raise ConfigError(f"phase keys {sorted(unknown)} are unknown; use tokens, weights, name, "
                                  "batch_size, seq_len")
            if "tokens" not in p or "weights" not in p:
                raise ConfigError(f"a phase needs 'tokens' and 'weights', got {sorted(p)}")
            return cls(p["tokens"], dict(p["weights"]), p.get("name"), p.get("batch_size"), p.get("seq_len"))
        raise ConfigError(f"a phase must be rsdb.Phase or a mapping, got {type(p).__name__}")


class LoaderConfig(BaseModel):
    """The loader's scalar options, validated before anything is opened."""

    model_config = ConfigDict(extra="forbid")
    seq_len: int = Field(8192, ge=1, le=2**30)
    batch_size: int = Field(8, ge=1)
    buffer_docs: int = Field(1024, ge=1)
    max_chunk: Optional[int] = Field(None, ge=1)
    refill_batch: Optional[int] = Field(None, ge=1)
    seed: int = Field(0, ge=0, lt=2**64)
    rank: int = Field(0, ge=0)
    world_size: int = Field(1, ge=1)
    worker_id: int = Field(0, ge=0)
    num_workers: int = Field(1, ge=1)
    epochs: Optional[int] = Field(None, ge=1)
    packing: Literal["rsdb", "sequential"] = "rsdb"
    verify: Union[Literal["off", "checksum", "full"], bool] = "checksum"
    prefetch: bool = True
    fields: tuple[str, ...] = FIELDS
    populate: Literal["pool", "shard", "off"] = "pool"
    shuffle_block_shards: int = Field(0, ge=0)

    @model_validator(mode="before")
    @classmethod
    def _populate_bool(cls, data: Any) -> Any:
        # populate=True / False: the names of "shard" / "off" before the "pool" mode existed
        if isinstance(data, dict) and isinstance(data.get("populate"), bool):
            data = {**data, "populate": "shard" if data["populate"] else "off"}
        return data

    @model_validator(mode="after")
    def _check(self) -> "LoaderConfig":
        if self.rank >= self.world_size:
            raise ValueError(f"rank {self.rank} must be < world_size {self.world_size}")
        if self.worker_id >= self.num_workers:
            raise ValueError(f"worker_id {self.worker_id} must be < num_workers {self.num_workers}")
        bad = [f for f in self.fields if f not in FIELDS]
        if bad:
            raise ValueError(f"fields {bad} unknown; choose from {list(FIELDS)}")
        if "tokens" not in self.fields:
            self.fields = ("tokens", *self.fields)
        return self


@dataclass
class _Unit:
    """One shard file (Arrow) or Megatron dataset of one source."""

    source: int
    path: str
    num_docs: int
    num_tokens: int
    doc_base: int
    opener: Any  # () -> shard view
    view: Any = None
    releaser: Any = None  # () -> None: unmap and unpin (remote shards), else None

    def release(self) -> None:
        self.view = None
        if self.releaser is not None:
            self.releaser()

    def open(self) -> Any:
        if self.view is None:
            self.view = self.opener()
        return self.view


def name_phases_and_check_sources(phases: Sequence[Any], known: Sequence[str]) -> None:
    """Name unnamed phases ``phase1``, ``phase2``... and reject weights for unknown sources.

    Shared by the loader's own API and the mixture config (anything with ``name`` and ``weights``).
    """
    for i, p in enumerate(phases):
        if p.name is None:
            p.name = f"phase{i + 1}"
        unknown = sorted(set(p.weights) - set(known))
        if unknown:
            raise ConfigError(f"phases[{i}] ({p.name}): unknown source(s) {unknown}; known: {sorted(known)}")


def _is_megatron(path: str) -> bool:
    p = path[:-4] if path.endswith((".bin", ".idx")) else path
    return os.path.isfile(p + ".bin") and os.path.isfile(p + ".idx")


def _source_units(idx: int, name: str, paths: Sequence[str], verify: Any, remote: Any = None,
                  storage_options: Mapping[str, Any] | None = None) -> tuple[list[_Unit], int | None]:
    from .shards import open_shards

    units: list[_Unit] = []
    vocab: int | None = None
    base = 0
    for raw in paths:
        path = os.fspath(raw)
        if "://" not in path and _is_megatron(path):
            from .megatron import open_megatron  # lazy: only for Megatron prefixes

            m = open_megatron(path, verify=verify)
            units.append(_Unit(idx, m.path, m.num_docs, m.num_tokens, base, lambda m=m: m))
            base += m.num_docs
            continue
        if "://" not in path and not os.path.exists(path):
            raise ConfigError(f"source {name!r}: {path} does not exist (expected a shard directory or a Megatron prefix)")
        if "://" in path:  # object storage: shards are fetched into a local cache first (rsdb.remote)
            shards = remote.open_shards(path, storage_options, verify=verify, source_index=idx)
        else:
            shards = open_shards(path, verify=verify)
        if shards.vocab_size is not None:
            vocab = shards.vocab_size if vocab is None else max(vocab, shards.vocab_size)
        for i, info in enumerate(shards.shards):
            where = getattr(shards, "shard_uri", shards.shard_path)(i)  # errors name the object, not the cache
            units.append(_Unit(idx, str(where), int(info["num_docs"]), int(info["num_tokens"]), base,
                               lambda s=shards, i=i: s.view(i),
                               releaser=(lambda s=shards, i=i: s.unmap(i)) if hasattr(shards, "unmap") else None))
            base += int(info["num_docs"])
    return units, vocab


class RSDBLoader:
    """Random Sequential Document Buffer loader over token shards and Megatron datasets.

    Each row of a batch is filled by repeatedly picking one of ``buffer_docs`` open
    documents uniformly at random and copying its next chunk (at most ``max_chunk``
    tokens); finished documents are replaced from a shuffled per-(rank, worker) stream
    whose source is chosen by the current phase's weights.

    Args:
        sources: source name -> shard directory, Megatron prefix (``X`` for
            ``X.bin``/``X.idx``), or a list of those.
        seq_len: training sequence length; rows hold ``seq_len + 1`` tokens.
        batch_size: rows per batch.
        buffer_docs: documents open at once (the pool).
        max_chunk: most tokens copied from one document per pick (None: no limit).
        seed: seeds every permutation and pick; same seed, same batches.
        rank, world_size: data-parallel position; streams are disjoint across ranks.
        worker_id, num_workers: DataLoader-worker position within a rank.
        epochs: None for endless (phased training); N to emit every token exactly N
            times, then stop; every rank and worker yields the same number of batches
            (the tail is padded with ``loss_mask`` False).
        phases: list of :class:`Phase` (or dicts); None: one endless phase weighted by
            each source's token count. Not combinable with ``epochs``.
        schedule: batch shape changes at global token counts: a list of
            :class:`rsdb.schedule.ScheduleEntry` or ``{"tokens": T, "batch_size": B,
            "seq_len": L}`` (either key may be left out); from the first step starting at
            or after ``T`` tokens on, batches have that shape (``batch_size``/``seq_len``
            give the shape before the first entry). Phases may set the same. Not
            combinable with ``epochs``.
        packing: ``"rsdb"`` or ``"sequential"`` (pool of one: documents concatenated in
            stream order, the naive baseline).
        refill_batch: free slots that trigger a pool refill (default buffer_docs // 16).
        verify: ``"checksum"`` (default): check each shard's xxh64, in a background
            thread, when it is first opened, before its documents enter the pool;
            ``"full"`` (or True): also scan its token ids; ``"off"`` (or False): none.
        fields: which arrays to produce (``tokens`` always); fewer is faster.
        populate: how the memory-mapped shards get into the page table. ``"pool"``
            (default): when a document enters the pool, the 2 MiB window of the shard
            around it (clipped to this stream's slice) is mapped in one
            ``madvise(MADV_POPULATE_READ)`` call, once per window, if the window is
            already in the page cache (checked with ``mincore``; a window that is not
            keeps ordinary page faults, so no extra disk reads); this replaces one page
            fault per 4 KiB page as random reads first touch them. ``"shard"`` (or
            True): map this stream's whole slice of a shard when the shard is first
            used (reads it from disk if needed; start-up grows with the corpus).
            ``"off"`` (or False): page faults only. Linux >= 5.14; elsewhere every mode
            behaves like ``"off"``.
        shuffle_block_shards: 0 (default): each epoch visits a stream's slice of a
            source in one permutation over all its shards. N > 0: in blocks of N
            shards: the shards in a seeded order, each block's documents in a
            permutation of their own (the pool still mixes ``buffer_docs`` documents
            across blocks and sources). A stream then needs only its current block's
            shards, so with object-storage sources the loader releases the others and
            ``max_cache_bytes`` may be far smaller than the corpus. Part of the order:
            same value needed to resume.
        prefetch: the core prefetches the read heads of the next picks into the CPU
            cache while it copies the current chunk (same batches either way).
        storage_options: fsspec options for sources given as URIs (``s3://...``); a
            source given as ``{"path": ..., "storage_options": ...}`` has its own.
        cache_dir, max_cache_bytes: the local folder remote shards are fetched into
            (default ``~/.cache/rsdb``), shared by every loader of the node, and its
            byte bound (None: unbounded).
        remote: further :class:`rsdb.remote.RemoteOptions` (``prefetch_shards``,
            ``timeout_s``, ``retries``, ...).

    Batches are dicts of numpy arrays, B = batch_size, L = seq_len: ``tokens`` int32,
    ``loss_mask`` bool, ``position_ids`` int32 (restart at 0 at every chunk),
    ``doc_ids`` int32 (the document's index within its source, so a document is the
    pair ``(source_ids, doc_ids)``; int64 if a source has 2^31 documents or more, see
    ``doc_id_dtype``), ``source_ids`` int16 (index into ``source_names``), all
    (B, L+1), and ``cu_seqlens`` int32 (B, W): each row's segment starts, then L+1,
    repeated up to ``W`` = 1 + the most segments in a row of this batch. Padding (end
    of a finite run): ``tokens`` 0, ``loss_mask`` False, ``doc_ids``/``source_ids`` -1,
    one segment of its own. :meth:`next_into` fills caller-owned arrays instead.

    >>> import tempfile, rsdb
    >>> d = tempfile.mkdtemp()
    >>> _ = rsdb.write_shards(d, [[1, 2, 3], [4, 5]])
    >>> b = next(iter(RSDBLoader({"s": d}, seq_len=4, batch_size=1, epochs=1, buffer_docs=1)))
    >>> b["tokens"].shape, int(b["loss_mask"].sum())
    ((1, 5), 5)
    """

    def __init__(
        self,
        sources: Mapping[str, Any],
        *,
        seq_len: int = 8192,
        batch_size: int = 8,
        buffer_docs: int = 1024,
        max_chunk: int | None = None,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        worker_id: int = 0,
        num_workers: int = 1,
        epochs: int | None = None,
        phases: Sequence[Phase | Mapping[str, Any]] | None = None,
        packing: str = "rsdb",
        refill_batch: int | None = None,
        verify: bool | str = "checksum",
        prefetch: bool = True,
        fields: Sequence[str] = FIELDS,
        populate: str | bool = "pool",
        shuffle_block_shards: int = 0,
        schedule: Sequence[Any] | None = None,
        storage_options: Mapping[str, Any] | None = None,
        cache_dir: str | os.PathLike | None = None,
        max_cache_bytes: int | None = None,
        remote: Mapping[str, Any] | None = None,
    ):
        # LoaderConfig is the one definition of the scalar options (types, bounds,
        # defaults); the signature spells them out again only for IDEs and help(), and
        # tests/rsdb/test_loader_signature.py checks names, defaults and docs agree. The
        # validated config is what pickling and the state keep.
        given = locals()
        # Object-storage sources (rsdb.remote): where and how remote shards are cached.
        self._remote_kwargs = {k: given[k] for k in _REMOTE_ARGS}
        try:
            cfg = LoaderConfig(**{k: given[k] for k in LoaderConfig.model_fields})
        except ValidationError as exc:
            raise ConfigError("invalid RSDBLoader arguments:\n  "
                              + validation_message(exc, root="config", sep="\n  ")) from None
        self.config = cfg
        if not isinstance(sources, Mapping) or not sources:
            raise ConfigError("sources must be a non-empty mapping of source name -> path(s)")
        from .remote import split_source_options

        self._sources_given = dict(sources)
        sources, self._source_storage = split_source_options(sources)
        self._sources_arg = {str(k): ([os.fspath(p) for p in v] if isinstance(v, (list, tuple)) else [os.fspath(v)])
                             for k, v in sources.items()}
        self.source_names: list[str] = list(self._sources_arg)
        seen: dict[str, str] = {}
        for name, plist in self._sources_arg.items():
            for path in plist:
                key = os.path.realpath(path[:-4] if path.endswith((".bin", ".idx")) else path)
                if key in seen:
                    raise ConfigError(f"{path} is listed twice (sources {seen[key]!r} and {name!r}); every document "
                                      "must come from one place, or exactly-once accounting breaks")
                seen[key] = name
        if phases is not None and epochs is not None:
            raise ConfigError("phases and epochs cannot be combined: phases schedule endless training, "
                              "epochs=N drains every source exactly N times")
        self.phases: list[Phase] | None = [Phase.coerce(p) for p in phases] if phases is not None else None
        if self.phases is not None:
            if not self.phases:
                raise ConfigError("phases: give at least one phase (or None)")
            name_phases_and_check_sources(self.phases, self.source_names)
        self._phase_ends = np.cumsum([p.tokens for p in self.phases]).tolist() if self.phases else None
        self.schedule: list[ScheduleEntry] = coerce_schedule(schedule)
        if self.phases:
            starts = [0] + self._phase_ends[:-1]
            taken = {e.tokens for e in self.schedule}
            for start, p in zip(starts, self.phases):
                if p.batch_size is None and p.seq_len is None:
                    continue
                if start in taken:
                    raise ConfigError(f"phase {p.name} sets the batch shape at {start} tokens, and so does the schedule")
                self.schedule.append(ScheduleEntry(start, p.batch_size, p.seq_len))
            self.schedule.sort(key=lambda e: e.tokens)
        if self.schedule and epochs is not None:
            raise ConfigError("schedule (or a phase's batch_size/seq_len) needs phased or endless training, not epochs=N")
        self.phase_names = [p.name for p in self.phases] if self.phases else ["all"]

        # Open manifests (not data) and lay out the units (shard files / Megatron datasets).
        self._units: list[_Unit] = []
        self._vocab: list[int | None] = []
        self.tokens_per_source: list[int] = []
        self.docs_per_source: list[int] = []
        from .remote import context_for

        self._remote = context_for(self._sources_arg, **self._remote_kwargs)
        for i, name in enumerate(self.source_names):
            units, vocab = _source_units(i, name, self._sources_arg[name], cfg.verify, self._remote,
                                         self._source_storage.get(name))
            self._units.extend(units)
            self._vocab.append(vocab)
            self.tokens_per_source.append(sum(u.num_tokens for u in units))
            self.docs_per_source.append(sum(u.num_docs for u in units))
        if len(self.source_names) > _MAX_SOURCES:
            raise ConfigError(f"{len(self.source_names)} sources; at most {_MAX_SOURCES} are supported "
                              "(source_ids are int16)")
        #: dtype of ``batch["doc_ids"]``: int32, or int64 if a source has 2^31 documents or more.
        self._doc_ids_64 = max(self.docs_per_source, default=0) > _DOC_ID32_MAX
        self.doc_id_dtype = np.dtype(np.int64 if self._doc_ids_64 else np.int32)
        sequential = cfg.packing == "sequential"
        self._pool = 1 if sequential else cfg.buffer_docs
        self._max_chunk = None if sequential else cfg.max_chunk
        self._refill = 1 if sequential else (cfg.refill_batch or max(1, self._pool // 16))
        self.num_streams = cfg.world_size * cfg.num_workers
        self.stream_index = cfg.rank * cfg.num_workers + cfg.worker_id
        n_phases = len(self.phases) if self.phases else 1
        self._core = _core.Core(
            seq_len1=cfg.seq_len + 1, batch_size=cfg.batch_size, buffer_docs=self._pool,
            max_chunk=self._max_chunk or 0, refill_batch=self._refill, seed=cfg.seed,
            stream_index=self.stream_index, num_streams=self.num_streams, epochs=cfg.epochs or 0,
            n_sources=len(self.source_names), n_phases=n_phases, prefetch=cfg.prefetch,
            populate_window=POPULATE_WINDOW if cfg.populate == "pool" else 0,
            block_shards=cfg.shuffle_block_shards,
        )
        self._registered: set[int] = set()
        self._unit_ranges: list[tuple[int, int]] = []
        within: dict[int, int] = {}
        for vid, u in enumerate(self._units):
            j = within.get(u.source, 0)
            within[u.source] = j + 1
            begin, end = self._stream_range(u.num_docs, (self.stream_index + j) % self.num_streams)
            self._unit_ranges.append((begin, end))
            self._core.add_unit(u.source, vid, u.num_docs, u.doc_base)
            self._core.add_range(u.source, vid, begin, end, u.doc_base)
        self._populate = cfg.populate == "shard"
        self._set_weights()
        # Remote shards outside every source's current block are released (unmapped and
        # unpinned, so the bounded cache may evict them) once nothing in the pool reads them.
        self._releasing = self._remote is not None and cfg.shuffle_block_shards > 0
        if self._remote is not None:
            from .remote import attach

            attach(self, self._remote)  # cache bound check, then background prefetch
        self.num_batches: int | None = None
        if cfg.epochs is not None:
            self.num_batches = self._finite_batches()
        else:
            for s, name in enumerate(self.source_names):
                if self._weighted(s) and self._core.n_local(s) == 0:
                    raise LoaderError(
                        f"source {name!r} has {self.docs_per_source[s]} documents, too few to give one to each of "
                        f"{self.num_streams} streams (world_size x num_workers); add data or drop its weight")
        self._batches = 0
        self._broken: str | None = None
        self._set_clock(0)
        self._step0 = 0  # global step number of this loader's step 0 (non-zero after a global restore)
        self._shape = (cfg.batch_size, cfg.seq_len)
        self._nseg = np.zeros(cfg.batch_size, np.int32)
        self._nseg_addr = self._nseg.ctypes.data
        # fill() releases the GIL: keep two threads from driving one core at once.
        self._lock = threading.Lock()

    @classmethod
    def from_mixture(cls, mixture: Any, **kwargs: Any) -> "RSDBLoader":
        """A loader following a mixture file's sources and phases (see :mod:`rsdb.mixture`).

        Same as ``rsdb.mixture.loader_from_mixture(mixture, **kwargs)``: the plan is
        checked against the manifests first, so an impossible mixture fails before any
        data is read.
        """
        from .mixture import loader_from_mixture

        return loader_from_mixture(mixture, **kwargs)

    # ---- layout ---------------------------------------------------------------------
    def _stream_range(self, n: int, q: int) -> tuple[int, int]:
        s = self.num_streams
        return (q * n) // s, ((q + 1) * n) // s

    def _weighted(self, s: int) -> bool:
        name = self.source_names[s]
        if self.phases is None:
            return self.tokens_per_source[s] > 0
        return any(p.weights.get(name, 0) > 0 for p in self.phases)

    def _set_weights(self) -> None:
        if self.phases is None:
            w = [float(t) for t in self.tokens_per_source]
            if sum(w) <= 0:
                w = [1.0] * len(w)
        else:
            w = [p.weights.get(name, 0.0) for p in self.phases for name in self.source_names]
        self._core.set_weights(w)

    def _register(self, vid: int) -> None:
        u = self._units[vid]
        view = u.open()
        tokens = view.tokens
        offsets = view.offsets
        if offsets.dtype != np.int64 or not offsets.flags.c_contiguous:
            raise ShardError(u.path, f"offsets must be contiguous int64, got {offsets.dtype}")
        if tokens.dtype not in _DTYPE_CODE or not tokens.flags.c_contiguous:
            raise ShardError(u.path, f"tokens must be contiguous uint32, int32 or uint16, got {tokens.dtype}")
        if offsets.shape[0] != u.num_docs + 1:
            raise ShardError(u.path, f"holds {offsets.shape[0] - 1} documents, expected {u.num_docs}")
        vocab = getattr(view, "vocab_size", None) or self._vocab[u.source]
        limit = 2**16 if tokens.dtype == np.uint16 else 2**31
        bound = min(vocab, limit) if vocab else limit
        self._core.set_view(vid, offsets, tokens, _DTYPE_CODE[tokens.dtype], int(bound))
        self._registered.add(vid)
        begin, end = self._unit_ranges[vid]
        if self._populate and end > begin and tokens.size:
            lo, hi = int(offsets[begin]), int(offsets[end])
            if 0 <= lo < hi <= tokens.shape[0]:
                _core.populate(tokens, lo, hi - lo)
                _core.populate(offsets, begin, end - begin + 1)

    def _release(self, vid: int) -> bool:
        """Unmap a registered remote shard the core no longer reads (False if a pool slot still does)."""
        u = self._units[vid]
        if u.releaser is None or not self._core.release_view(vid):
            return False
        self._registered.discard(vid)
        u.release()
        return True

    def _release_unused(self) -> None:
        """After a batch: release every registered remote shard outside the core's working set."""
        if len(self._registered) <= len(self.source_names):
            return  # nothing to gain below one shard per source
        in_use = set(self._core.views_in_use())
        for vid in [v for v in self._registered if v not in in_use]:
            self._release(vid)

    def _finite_batches(self) -> int:
        """Batches every stream yields in finite mode: the max over all streams (no token scan)."""
        per_stream = np.zeros(self.num_streams, dtype=np.int64)
        within: dict[int, int] = {}
        keep = set(self._core.views_in_use()) if self._releasing else set()
        for vid, u in enumerate(self._units):
            j = within.get(u.source, 0)
            within[u.source] = j + 1
            if u.num_docs == 0:
                continue
            if vid not in self._registered:
                self._register(vid)
            off = u.view.offsets
            for k in range(self.num_streams):
                b, e = self._stream_range(u.num_docs, (k + j) % self.num_streams)
                per_stream[k] += int(off[e]) - int(off[b])
            del off
            if self._releasing and vid not in keep:
                self._release(vid)  # counted: a bounded cache may need the room for the next one
        self.stream_tokens = per_stream.tolist()
        per_batch = self.config.batch_size * (self.config.seq_len + 1)
        worst = int(per_stream.max()) * int(self.config.epochs or 1)
        return max(1, -(-worst // per_batch))

    # ---- iteration ------------------------------------------------------------------
    def _set_clock(self, tokens0: int) -> None:
        """Step 0 of this loader starts at global token count ``tokens0`` (0, or a restore point)."""
        c = self.config
        self._tokens0 = int(tokens0)
        self._clock = StepClock(world_size=c.world_size, batch_size=c.batch_size, seq_len=c.seq_len,
                                schedule=self.schedule, tokens0=self._tokens0)

    @property
    def tokens_per_step(self) -> int:
        """Training tokens per global step (all ranks) of the next batch: batch_size * seq_len * world_size."""
        b, s = self.batch_shape
        return b * s * self.config.world_size

    @property
    def batch_shape(self) -> tuple[int, int]:
        """(batch_size, seq_len) of the next batch (changes only with a schedule)."""
        return self._clock.shape_at(self._global_step(self._batches))

    @property
    def global_tokens(self) -> int:
        """Global training tokens (all ranks) before this stream's next batch."""
        return self._clock.tokens_at(self._global_step(self._batches))

    def _global_step(self, local_batch: int) -> int:
        # the DataLoader's round robin: global step g is worker g mod num_workers's batch g // num_workers
        return local_batch * self.config.num_workers + self.config.worker_id

    def _phase_of(self, local_batch: int) -> int:
        if self._phase_ends is None:
            return 0
        return bisect.bisect_right(self._phase_ends, self._clock.tokens_at(self._global_step(local_batch)))

    def _phase_tokens_left(self, local_batch: int, phase: int) -> int:
        """Tokens this stream emits in ``phase`` from the start of ``local_batch`` (-1: no end).

        With a schedule that changes the shape inside the phase this is an estimate for
        the mixer (the current shape is assumed up to the phase's end).
        """
        if self._phase_ends is None:
            return -1
        w, nw = self.config.worker_id, self.config.num_workers
        first_global = self._clock.first_step_at(self._phase_ends[phase])  # first step of the next phase
        first_local = max(0, -(-(first_global - w) // nw))
        b, s = self._clock.shape_at(self._global_step(local_batch))
        return (first_local - local_batch) * b * (s + 1)

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        return self

    def __len__(self) -> int:
        if self.num_batches is None:
            if self._phase_ends is None:
                raise TypeError("an endless RSDBLoader has no length")
            steps = self._clock.first_step_at(self._phase_ends[-1])
            w, nw = self.config.worker_id, self.config.num_workers
            return max(0, -(-(steps - w) // nw))
        return self.num_batches

    def _buffers(self) -> tuple[dict[str, np.ndarray], tuple[int, ...]]:
        """A fresh set of output arrays and their addresses in fill() order.

        ``next()`` hands out new arrays every batch, so a caller may keep any batch (or a
        tensor made from it) as long as it likes. A caller that wants to reuse memory
        says so: :meth:`next_into` fills arrays the caller owns. Fresh arrays cost
        nothing measurable against reused ones: the allocator hands the previous
        batch's freed memory to the next (``benchmarks/loader_bench.py``, lines ``rsdb``
        and ``rsdb_into``; figures in docs/rsdb.md, "Batch format").
        """
        B, L1 = self._shape[0], self._shape[1] + 1
        f = set(self.config.fields)
        bufs = {"tokens": np.empty((B, L1), np.int32)}
        if "loss_mask" in f:
            bufs["loss_mask"] = np.empty((B, L1), np.bool_)
        if "position_ids" in f:
            bufs["position_ids"] = np.empty((B, L1), np.int32)
        if "doc_ids" in f:
            bufs["doc_ids"] = np.empty((B, L1), self.doc_id_dtype)
        if "source_ids" in f:
            bufs["source_ids"] = np.empty((B, L1), np.int16)
        if "cu_seqlens" in f:
            # room for every row at full width; the batch gets a (B, W) view of its start
            bufs["_cu"] = np.empty(B * (L1 + 1), np.int32)
        addr = tuple(bufs[k].ctypes.data if k in bufs else 0 for k in _FILL_ORDER[:-1]) + (self._nseg_addr,)
        return bufs, addr

    def __next__(self) -> dict[str, np.ndarray]:
        with self._lock:
            return self._next()

    def buffer_layout(self) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
        """Shape and dtype of every array :meth:`next_into` fills, for this loader's fields.

        ``cu_seqlens`` is a flat int32 buffer with room for every row at full width,
        ``batch_size * (seq_len + 2)`` entries; the batch gets a ``(batch_size, W)`` view
        of its start.
        """
        B, L1 = self.batch_shape[0], self.batch_shape[1] + 1
        types = {"tokens": np.int32, "loss_mask": np.bool_, "position_ids": np.int32,
                 "doc_ids": self.doc_id_dtype, "source_ids": np.int16}
        out = {k: ((B, L1), np.dtype(types[k])) for k in FIELDS if k in types and k in self.config.fields}
        if "cu_seqlens" in self.config.fields:
            out["cu_seqlens"] = ((B * (L1 + 1),), np.dtype(np.int32))
        return out

    def next_into(self, buffers: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Fill the next batch into caller-owned arrays (e.g. in shared memory).

        ``buffers`` holds one writable, C-contiguous array per entry of
        :meth:`buffer_layout`, with exactly that shape and dtype. Returns the batch: the
        same arrays, ``cu_seqlens`` as its ``(batch_size, W)`` view. Raises
        ``StopIteration`` at the end, like ``next()``.
        """
        layout = self.buffer_layout()
        if set(buffers) != set(layout):
            raise ConfigError(f"next_into needs arrays for {sorted(layout)}, got {sorted(buffers)}")
        for k, (shape, dtype) in layout.items():
            a = buffers[k]
            if not isinstance(a, np.ndarray) or a.shape != shape or a.dtype != dtype \
                    or not a.flags.c_contiguous or not a.flags.writeable:
                raise ConfigError(f"next_into: buffers[{k!r}] must be a writable C-contiguous {dtype} array of shape "
                                  f"{shape}, got {getattr(a, 'dtype', type(a).__name__)} {getattr(a, 'shape', '')}")
        bufs = {("_cu" if k == "cu_seqlens" else k): buffers[k] for k in layout}
        with self._lock:
            self._reshape(self.batch_shape)
            addr = tuple(bufs[k].ctypes.data if k in bufs else 0 for k in _FILL_ORDER[:-1]) + (self._nseg_addr,)
            return self._next(bufs, addr)

    def _reshape(self, shape: tuple[int, int]) -> None:
        """Switch the core and the output arrays to a scheduled batch shape (between batches)."""
        if shape == self._shape:
            return
        self._core.reshape(shape[0], shape[1] + 1)
        self._shape = shape
        self._nseg = np.zeros(shape[0], np.int32)
        self._nseg_addr = self._nseg.ctypes.data

    def _next(self, bufs: dict[str, np.ndarray] | None = None, addr: tuple[int, ...] | None = None
              ) -> dict[str, np.ndarray]:
        if self._broken:
            raise LoaderError(f"loader stopped after an error: {self._broken}")
        if self.num_batches is not None and self._batches >= self.num_batches:
            raise StopIteration
        if self._phase_ends is None:
            phase, left = 0, -1
        else:
            phase = self._phase_of(self._batches)
            if phase >= len(self._phase_ends):
                raise StopIteration
            left = self._phase_tokens_left(self._batches, phase)
        if bufs is None:
            self._reshape(self.batch_shape)
            bufs, addr = self._buffers()
        while True:
            st = self._core.fill(*addr, phase, left, self._doc_ids_64)
            if st is _Status.OK:
                break
            if st is _Status.NEED_VIEW:
                try:
                    self._register(self._core.error_view)
                except Exception as exc:
                    self._broken = str(exc)
                    raise
                continue
            self._broken = self._error(st)
            unit = self._units[self._core.error_view] if self._core.error_view >= 0 else None
            if st in (_Status.BAD_DOC, _Status.BAD_TOKEN) and unit is not None:
                raise ShardError(unit.path, self._broken)
            raise LoaderError(self._broken)
        self._batches += 1
        if self._releasing:
            self._release_unused()
        out = bufs.copy()
        cu = out.pop("_cu", None)
        if cu is not None:
            B = self._shape[0]
            out["cu_seqlens"] = cu[: B * self._core.cu_width].reshape(B, -1)
        return out

    @property
    def _last_segments(self) -> np.ndarray:
        """Segments (chunks) per row of the last batch, padding not counted."""
        return self._nseg.copy()

    def _error(self, st: _core.Status) -> str:
        c = self._core
        if st is _Status.BAD_DOC:
            return f"document {c.error_doc}: offsets out of range (value {c.error_value}); the shard is corrupt"
        if st is _Status.BAD_TOKEN:
            u = self._units[c.error_view]
            vocab = self._vocab[u.source]
            return (f"document {c.error_doc}: token id {c.error_value} is out of range"
                    f" (vocab_size {vocab})" if vocab else f"document {c.error_doc}: token id {c.error_value} is out of range")
        if st is _Status.EMPTY_SOURCE:
            name = self.source_names[c.error_source]
            return (f"source {name!r} has no tokens in stream {self.stream_index} of {self.num_streams}; "
                    "it cannot be sampled (all its documents here are empty)")
        return f"core returned status {st}"

    # ---- state ----------------------------------------------------------------------
    def _fingerprint(self) -> dict[str, Any]:
        c = self.config
        return {
            "seq_len": c.seq_len, "batch_size": c.batch_size, "buffer_docs": self._pool, "max_chunk": self._max_chunk,
            "refill_batch": self._refill, "seed": c.seed, "rank": c.rank, "world_size": c.world_size,
            "worker_id": c.worker_id, "num_workers": c.num_workers, "epochs": c.epochs, "packing": c.packing,
            "sources": self.source_names,
            "units": [sum(1 for u in self._units if u.source == s) for s in range(len(self.source_names))],
            "docs": [u.num_docs for u in self._units],
            "corpus": self._corpus_digest(),
            "phases": [[p.tokens, p.weights] for p in self.phases] if self.phases else None,
            "schedule": [e.to_json() for e in self.schedule] or None,
            "shuffle_block_shards": c.shuffle_block_shards,
        }

    def _corpus_digest(self) -> str:
        """Names, shard order, documents and tokens of every source: what a state's documents refer to."""
        import hashlib
        import json

        body = [self.source_names, [[u.source, u.num_docs, u.num_tokens] for u in self._units]]
        return hashlib.sha256(json.dumps(body).encode()).hexdigest()[:16]

    def state_dict(self) -> dict[str, Any]:
        """Small, JSON-able state: RNG counter, pool (view, doc, head) triples, stream cursors, counters."""
        with self._lock:
            return {"format": STATE_FORMAT, "version": _core.core_version(), "batches": self._batches,
                    "tokens0": self._tokens0, "step0": self._step0, "num_batches": self.num_batches,
                    "config": self._fingerprint(), "core": self._core.get_state()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from ``state``.

        A per-stream :meth:`state_dict` continues exactly where it was taken (same sources
        and arguments required). A global state from :func:`rsdb.gather_state` may come
        from any ``world_size``, ``num_workers``, ``batch_size``, ``seq_len`` and
        ``buffer_docs``: this stream takes its share of the remaining work (see
        ``rsdb.state``), so over all new streams every remaining token comes exactly once.
        """
        from .state import is_global_state

        if is_global_state(state):
            self._load_global(state)
            return
        if state.get("format") != STATE_FORMAT:
            raise LoaderError(f"not an RSDB loader state (format {state.get('format')!r})")
        if state.get("version") != _core.core_version():
            raise LoaderError(f"state version {state.get('version')} != core version {_core.core_version()}")
        mine = self._fingerprint()
        theirs = {"shuffle_block_shards": 0, **state.get("config", {})}  # states written before the option
        diff = [k for k in mine if _jsonish(mine[k]) != _jsonish(theirs.get(k))]
        if diff:
            details = "; ".join(f"{k}: state has {theirs.get(k)!r}, loader has {mine[k]!r}" for k in diff)
            raise LoaderError(f"state does not match this loader ({details})")
        core = dict(state["core"])
        for vid in set(core.get("slot_view", [])):
            if not 0 <= vid < len(self._units):
                raise LoaderError(f"state refers to shard {vid}, but the loader has {len(self._units)}")
            if vid not in self._registered:
                self._register(vid)
        with self._lock:
            problem = self._core.set_state(core)
        if problem:
            raise LoaderError(f"state rejected by the core: {problem}")
        self._batches = int(state["batches"])
        if self.num_batches is not None and state.get("num_batches") is not None:
            self.num_batches = int(state["num_batches"])  # after a global restore: the carried work's count
        self._set_clock(int(state.get("tokens0", 0)))
        self._step0 = int(state.get("step0", 0))
        self._broken = None

    def _load_global(self, state: Mapping[str, Any]) -> None:
        from .state import Decoded, core_state, verify_global

        verify_global(state)
        mine = self._fingerprint()
        if list(state["sources"]) != mine["sources"]:
            raise LoaderError(f"global state is for sources {state['sources']}, this loader has {mine['sources']} "
                              "(same names in the same order)")
        units = [u for u in self._units]
        if list(state["units"]) != mine["units"] or list(state["docs"]) != mine["docs"]:
            bad = []
            at = 0
            for s, name in enumerate(self.source_names):
                n = state["units"][s] if s < len(state["units"]) else 0
                theirs = state["docs"][at:at + n]
                at += n
                ours = [u.num_docs for u in units if u.source == s]
                if list(theirs) != ours:
                    bad.append(f"{name!r} ({len(theirs)} shards, {sum(theirs)} documents in the state; "
                               f"{len(ours)} shards, {sum(ours)} documents here)")
            raise LoaderError("global state is from a different corpus: source " + "; ".join(bad))
        if state["corpus"] != mine["corpus"]:
            raise LoaderError("global state is from a different corpus: the shards' token counts differ "
                              f"(corpus digest {state['corpus']}, this loader's {mine['corpus']})")
        for key in ("seed", "epochs", "phases", "shuffle_block_shards"):
            if _jsonish(state.get(key, 0)) != _jsonish(mine[key]):
                raise LoaderError(f"global state has {key} {state[key]!r}, this loader {mine[key]!r}: the {key} "
                                  "must stay the same across a restart (the phase boundaries and the remaining "
                                  "documents depend on them)")
        if state.get("core_version") != _core.core_version():
            raise LoaderError(f"global state from core version {state.get('core_version')}, "
                              f"this core is {_core.core_version()}")
        dec = Decoded(state)
        share = dec.share(self.num_streams, self.stream_index)
        for vids, _, _ in share["partial"]:
            for vid in {int(v) for v in vids}:
                if vid not in self._registered:
                    self._register(vid)
        core = core_state(state, share, self.config.epochs, _core.core_version())
        with self._lock:
            problem = self._core.set_state(core)
        if problem:
            raise LoaderError(f"global state rejected by the core: {problem}")
        self._batches = 0
        self._set_clock(int(state["tokens"]))
        self._step0 = int(state["step"])
        self._broken = None
        if self.config.epochs is not None:
            self.num_batches = self._carried_batches(dec)

    def _carried_batches(self, dec: Any) -> int:
        """Finite mode after a global restore: batches of the stream with the most carried tokens."""
        from .state import _cut

        for vid, u in enumerate(self._units):
            if u.num_docs and vid not in self._registered:
                self._register(vid)
        S = self.num_streams
        per_stream = np.zeros(S, dtype=np.int64)
        for s in range(len(self.source_names)):
            idx = dec.partial_idx[s]
            left = np.zeros(idx.size, dtype=np.int64)
            for vid in np.unique(dec.vids[idx]) if idx.size else ():
                sel = np.flatnonzero(dec.vids[idx] == vid)
                off = self._units[int(vid)].view.offsets
                d = dec.doc[idx[sel]]
                left[sel] = off[d + 1] - off[d] - dec.head[idx[sel]]
            prefix = np.concatenate([[0], np.cumsum(left)])
            for k in range(S):
                lo, hi = k * idx.size // S, (k + 1) * idx.size // S
                per_stream[k] += int(prefix[hi] - prefix[lo])
                total = dec.piece_docs[s]
                for row in _cut(dec.pieces[s], k * total // S, (k + 1) * total // S):
                    t = self._core.piece_tokens(s, *(int(x) for x in row))
                    if t < 0:
                        raise LoaderError(f"shard {-1 - t} is not open")
                    per_stream[k] += t
        self.stream_tokens = per_stream.tolist()
        b, L = self.batch_shape
        return int(-(-int(per_stream.max()) // (b * (L + 1)))) if S else 0

    def __getstate__(self) -> dict[str, Any]:
        return {"sources": self._sources_given, "kwargs": {**self.config.model_dump(), **self._remote_kwargs},
                "phases": [[p.tokens, p.weights, p.name] for p in self.phases] if self.phases else None,
                # phases' batch shapes are already merged into the schedule
                "schedule": [e.to_json() for e in self.schedule] or None,
                "state": self.state_dict()}

    def __setstate__(self, d: dict[str, Any]) -> None:
        phases = [Phase(*p) for p in d["phases"]] if d["phases"] else None
        self.__init__(d["sources"], phases=phases, schedule=d.get("schedule"), **d["kwargs"])
        self.load_state_dict(d["state"])

    # ---- stats ----------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """Tokens emitted per phase and source, epochs per source, the current phase."""
        emitted = self._core.emitted
        ns = len(self.source_names)
        per_phase = {}
        for p, pname in enumerate(self.phase_names):
            row = {name: int(emitted[p * ns + s]) for s, name in enumerate(self.source_names)}
            if any(row.values()):
                per_phase[pname] = row
        epochs = {}
        for name, (epoch, cursor, n_local, exhausted) in zip(self.source_names, self._core.source_progress()):
            epochs[name] = float(epoch + cursor / n_local) if n_local else 0.0
        cur = self._phase_of(max(0, self._batches - 1))
        return {
            "batches": self._batches,
            "phase": self.phase_names[min(cur, len(self.phase_names) - 1)],
            "tokens_per_phase": per_phase,
            "epochs": epochs,
            "pool_docs": self._core.n_active,
            "stream": [self.stream_index, self.num_streams],
            **({"remote": self._remote.stats()} if self._remote is not None else {}),
        }


def _jsonish(x: Any) -> Any:
    import json

    return json.loads(json.dumps(x))
