"""Token shards in object storage (``s3://``, ``gs://``, ``memory://``, any fsspec URI).

The compiled core memory-maps shard files, so a remote shard is first made a complete,
verified local file in a :class:`rsdb.cache.ShardCache`, then opened like any local
shard. :class:`RemoteContext` is what a loader holds: one cache, one fetcher (ranged
reads with retries, backoff and timeouts) and background prefetch threads.

* **Start-up reads one object per source**, its ``manifest.json``: no listing, no
  request per shard, so construction time does not depend on the shard count.
* **Shards are fetched whole, in ranged reads** of ``chunk_bytes`` (one GET each, no
  HEAD: the size is in the manifest). A transient error (timeout, connection reset,
  5xx) retries only the chunk that failed, with exponential backoff; a missing object
  fails at once, naming it.
* **Every fetched shard is checked against its manifest checksum** (xxh64, hashed
  while it streams to disk) before it is renamed into the cache. A mismatch fetches
  the object once more, then raises :class:`rsdb.ShardError` naming the URI.
* **Prefetch order is the order of first use.** A stream reads each source in the
  order of a Feistel permutation keyed by the seed, so which shard its ``c``-th
  document lies in is known before anything is read. The prefetcher walks that order
  (sources merged by their share of the phase that first weights them, unweighted
  sources skipped), ``prefetch_shards`` downloads in flight. A shard the core asks for
  before its turn is fetched at once in the loader's thread; that wait is
  ``stats()["remote"]["wait_s"]``. The permutation touches every shard of a source
  early (a pool of ``buffer_docs`` documents spans up to that many shards), so a cold
  cache costs the first batch about ``min(buffer_docs, shards)`` fetches.

Trade-off: by default a shard stays mapped (pinned in the cache) for the loader's
lifetime, since a stream's epoch reads a slice of every shard; the cache must then hold
every shard of the weighted remote sources, which the loader checks against
``max_cache_bytes`` before it starts, and the bound protects the disk from other runs
and datasets sharing the directory. With ``shuffle_block_shards=N`` a stream needs two
blocks of shards at most in the usual case (its current block and the previous one's
documents still in the pool); the loader unmaps the rest after every batch, so a bound
of a fraction of the corpus serves the run, at the price of fetching shards again in
later epochs.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import logging
import os
import random
import threading
import time
import weakref
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from common.config import validation_message

from .cache import CacheFull, Pin, ShardCache
from .errors import ConfigError, ShardError
from .manifest import MANIFEST
from .manifest import _check as _check_manifest
from .shards import TokenShards, verify_mode

__all__ = ["RemoteContext", "RemoteOptions", "RemoteTokenShards", "is_uri"]

log = logging.getLogger(__name__)

# Errors that retrying cannot fix: fail at once with the object's name.
_PERMANENT = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError, TypeError)


def is_uri(path: str) -> bool:
    """True for ``proto://...`` paths (the remote layer handles them, ``file://`` too)."""
    return "://" in str(path)


def default_cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "rsdb")


class RemoteOptions(BaseModel):
    """How remote shards are fetched and cached (validated before anything is read)."""

    model_config = ConfigDict(extra="forbid")
    cache_dir: Optional[str] = Field(None, description="local cache folder; default ~/.cache/rsdb")
    max_cache_bytes: Optional[int] = Field(None, ge=1, description="bound on the cache folder; None: unbounded")
    prefetch_shards: int = Field(8, ge=0, description="background downloads in flight (0: fetch on demand only)")
    chunk_bytes: int = Field(16 << 20, ge=1 << 16, description="bytes per ranged read")
    timeout_s: float = Field(60.0, gt=0, description="longest wait for one request (one ranged read of chunk_bytes)")
    retries: int = Field(4, ge=0, description="retries of a failed request (transient errors only)")
    backoff_s: float = Field(0.5, ge=0, description="first retry delay; doubles per retry, with jitter")
    lock_timeout_s: float = Field(600.0, gt=0, description="longest wait for another process's download")


def _storage_options(protocol: str, given: Mapping[str, Any] | None, opts: RemoteOptions) -> dict[str, Any]:
    """The user's fsspec options, plus timeouts and a single attempt for S3 unless given.

    botocore and s3fs retry on their own (several attempts each, with their own
    backoff); leaving that on would multiply with ours and hide a dead endpoint for
    minutes. Our retry loop is the one that counts and reports.
    """
    out = dict(given or {})
    if protocol in ("s3", "s3a"):
        cfg = dict(out.get("config_kwargs") or {})
        cfg.setdefault("connect_timeout", opts.timeout_s)
        cfg.setdefault("read_timeout", opts.timeout_s)
        cfg.setdefault("retries", {"total_max_attempts": 1, "mode": "standard"})
        out["config_kwargs"] = cfg
    elif protocol in ("http", "https") and "timeout" not in out:
        import aiohttp

        # fsspec's HTTP store passes unknown options to every request: aiohttp then gives
        # up on a connection or a read that stalls for timeout_s (its default is 5 min).
        out["timeout"] = aiohttp.ClientTimeout(total=None, sock_connect=opts.timeout_s, sock_read=opts.timeout_s)
    return out


# Stores that never stall (local files, memory): no watchdog thread per request.
_LOCAL_PROTOCOLS = ("file", "local", "memory")


def _within(timeout_s: float, fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` in a thread of its own; TimeoutError if it has not returned in ``timeout_s``.

    The stores' own timeouts (botocore's, aiohttp's) bound each socket operation, not a
    request: a store that trickles bytes, or a backend with no timeout at all, could
    hold a read for ever. The watchdog bounds the whole request whatever the store;
    a request it gives up on is left to end in its daemon thread.
    """
    box: list = []
    done = threading.Event()

    def target() -> None:
        try:
            box.append((True, fn(*args, **kwargs)))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            box.append((False, exc))
        done.set()

    threading.Thread(target=target, name="rsdb-request", daemon=True).start()
    if not done.wait(timeout_s):
        raise TimeoutError(f"no complete answer within timeout_s={timeout_s:g} s")
    ok, value = box[0]
    if ok:
        return value
    raise value


class Fetcher:
    """Ranged reads of one store with retries; counts what it does (thread-safe)."""

    def __init__(self, fs: Any, opts: RemoteOptions, protocol: str = ""):
        self.fs = fs
        self.opts = opts
        self.watchdog = protocol not in _LOCAL_PROTOCOLS
        self._lock = threading.Lock()
        self.requests = 0
        self.retries = 0
        self.bytes = 0

    def _count(self, requests: int = 0, retries: int = 0, nbytes: int = 0) -> None:
        with self._lock:
            self.requests += requests
            self.retries += retries
            self.bytes += nbytes

    def call(self, what: str, fn, *args, **kwargs):
        """Run ``fn`` with retries on transient errors; a clear ShardError at the end."""
        attempts = self.opts.retries + 1
        start = time.monotonic()
        for attempt in range(attempts):
            try:
                self._count(requests=1)
                if self.watchdog:
                    return _within(self.opts.timeout_s, fn, *args, **kwargs)
                return fn(*args, **kwargs)
            except _PERMANENT as exc:
                raise ShardError(what, f"not found or not readable in the store: {exc}") from None
            except Exception as exc:  # noqa: BLE001 - any store error other than the above may be transient
                if attempt + 1 == attempts:
                    took = time.monotonic() - start
                    raise ShardError(what, f"fetch failed after {attempts} attempts in {took:.1f} s "
                                           f"(retries={self.opts.retries}, timeout_s={self.opts.timeout_s:g}): "
                                           f"{type(exc).__name__}: {exc}") from None
                delay = self.opts.backoff_s * (2**attempt) * (0.5 + random.random())
                log.info("%s: %s: %s; retry %d/%d in %.2f s", what, type(exc).__name__, exc, attempt + 1,
                         self.opts.retries, delay)
                self._count(retries=1)
                time.sleep(delay)
        raise AssertionError("unreachable")

    def read_range(self, uri: str, path: str, start: int, end: int) -> bytes:
        data = self.call(uri, self.fs.cat_file, path, start=start, end=end)
        self._count(nbytes=len(data))
        return data

    def read_all(self, uri: str, path: str) -> bytes:
        data = self.call(uri, self.fs.cat_file, path)
        self._count(nbytes=len(data))
        return data


def _checksum(info: Mapping[str, Any]):
    """(algorithm name, expected hex digest, new hasher) from a manifest shard entry."""
    if "xxh64" in info:
        import xxhash

        return "xxh64", str(info["xxh64"]), xxhash.xxh64()
    return "sha256", str(info["sha256"]), hashlib.sha256()


class RemoteTokenShards(TokenShards):
    """A shard directory in a store: its manifest, and shards materialised on first use.

    ``shard_path(i)`` is the cached local file, ``shard_uri(i)`` the object; errors name
    the URI. Built by :meth:`RemoteContext.open_shards`.
    """

    def __init__(self, uri: str, manifest: dict[str, Any], ctx: "RemoteContext", fs_path: str, folder: Path,
                 fetcher: Fetcher, verify: Any):
        # The checksum is compared while the object streams into the cache, so the
        # parent class need not read the file again; "full" still scans token ids.
        super().__init__(folder, manifest, verify="off")
        self.verify_mode = verify_mode(verify)
        self.path = uri
        self.uri = uri
        self._ctx = ctx
        self._fs_path = fs_path
        self._fetcher = fetcher
        self._pins: dict[int, Pin] = {}
        self._ready: dict[int, threading.Event] = {}
        self._guard = threading.Lock()

    def shard_uri(self, i: int) -> str:
        return f"{self.uri}/{self.shards[i]['file']}"

    def shard_bytes(self, i: int) -> int:
        return int(self.shards[i]["bytes"])

    def is_local(self, i: int) -> bool:
        return i in self._pins

    def materialize(self, i: int, *, demand: bool) -> Path:
        """Make shard ``i`` a pinned, verified local file (fetching it if needed)."""
        t0 = time.monotonic()
        while True:
            with self._guard:
                if i in self._pins:
                    return self.shard_path(i)
                ready = self._ready.get(i)
                mine = ready is None
                if mine:
                    ready = self._ready[i] = threading.Event()
            if mine:
                break
            # A thread of this process (a prefetch) is fetching it: wait for that, not
            # for the file lock's polling; if it failed, try again ourselves.
            ready.wait(self._ctx.options.lock_timeout_s)
            if i in self._pins:
                self._ctx._account(waited=time.monotonic() - t0 if demand else 0.0, demand=demand)
                return self.shard_path(i)
        try:
            path = self.shard_path(i)
            fill = lambda part: self._fill(i, part)  # noqa: E731
            if demand:
                pin, fetched = self._ctx.demand_materialize(path, self.shard_bytes(i), fill, self.shard_uri(i))
            else:
                pin, fetched = self._ctx.cache.materialize(path, self.shard_bytes(i), fill, self.shard_uri(i))
            with self._guard:
                self._pins[i] = pin
            self._ctx._pinned(self.shard_bytes(i))
        finally:
            with self._guard:
                self._ready.pop(i, None)
            ready.set()
        self._ctx._account(fetched=fetched, nbytes=self.shard_bytes(i) if fetched else 0,
                           waited=time.monotonic() - t0 if demand else 0.0, demand=demand)
        return path

    def _fill(self, i: int, part: Path) -> None:
        """Download shard ``i`` into ``part`` and verify it; one refetch on a mismatch."""
        info = self.shards[i]
        uri = self.shard_uri(i)
        size = self.shard_bytes(i)
        algo, want, _ = _checksum(info)
        problem = ""
        for attempt in range(2):
            got = self._download(i, part, size)
            if got == want:
                return
            problem = f"{algo} checksum mismatch: object has {got}, manifest says {want}"
            if attempt == 0:
                self._ctx._account(refetched=True)
                log.warning("%s: %s; fetching it once more", uri, problem)
        raise ShardError(uri, f"{problem} (also after one refetch: the stored object is corrupt or was "
                              "rewritten without its manifest)")

    def _download(self, i: int, part: Path, size: int) -> str:
        """Stream the object to ``part`` in ranged reads; return its checksum (hex)."""
        uri = self.shard_uri(i)
        src = f"{self._fs_path}/{self.shards[i]['file']}"
        chunk = self._ctx.options.chunk_bytes
        _, _, hasher = _checksum(self.shards[i])
        with open(part, "wb") as f:
            pos = 0
            while pos < size:
                end = min(size, pos + chunk)
                data = self._fetcher.read_range(uri, src, pos, end)
                if len(data) != end - pos:
                    # A short (or long) object is not transient: hand it to the checksum,
                    # whose mismatch triggers the one refetch and then a ShardError.
                    hasher.update(data)
                    return f"{hasher.hexdigest()} ({pos + len(data)}+ bytes read, manifest says {size})"
                f.write(data)
                hasher.update(data)
                pos = end
        return hasher.hexdigest()

    def view(self, i: int):
        v = self._views.get(i)
        if v is None:
            self.materialize(i, demand=True)
            try:
                v = super().view(i)
                if self.verify_mode == "full":
                    v.validate()
            except ShardError as exc:
                raise ShardError(self.shard_uri(i), f"{exc.problem} (cached copy {exc.path})") from None
        return v

    def unmap(self, i: int) -> None:
        """Drop shard ``i``'s view and its pin: the cache may evict the file from now on.

        The caller (the loader) has made the core forget the view's pointers first.
        """
        with self._guard:
            self._views.pop(i, None)
            pin = self._pins.pop(i, None)
        if pin is not None:
            pin.release()
            self._ctx._pinned(-self.shard_bytes(i))

    def unpin_unused(self, i: int) -> bool:
        """Release a prefetched shard that is not mapped yet (to make room); False if it is mapped."""
        with self._guard:
            if i in self._views or i not in self._pins:
                return False
            pin = self._pins.pop(i)
        pin.release()
        self._ctx._pinned(-self.shard_bytes(i))
        return True

    def validate(self, verify: Any = True) -> None:
        for i in range(self.num_shards):
            self.materialize(i, demand=True)
        super().validate(verify)

    def close(self) -> None:
        with self._guard:
            freed = sum(self.shard_bytes(i) for i in self._pins)
            for pin in self._pins.values():
                pin.release()
            self._pins.clear()
        if freed:
            self._ctx._pinned(-freed)

    def __repr__(self) -> str:
        return (f"RemoteTokenShards({self.uri!r}, source={self.source!r}, shards={self.num_shards}, "
                f"num_docs={self.num_docs}, num_tokens={self.num_tokens})")


class RemoteContext:
    """A loader's remote machinery: options, the cache, one fetcher per store, prefetch.

    Args:
        options: a :class:`RemoteOptions` or a mapping of its fields.
        storage_options: fsspec options for every URI (e.g. ``key``, ``secret``,
            ``client_kwargs={"endpoint_url": ...}``), overridden per source by
            :meth:`open_shards`'s own.
    """

    def __init__(self, options: RemoteOptions | Mapping[str, Any] | None = None,
                 storage_options: Mapping[str, Any] | None = None):
        if not isinstance(options, RemoteOptions):
            try:
                options = RemoteOptions(**dict(options or {}))
            except ValidationError as exc:
                raise ConfigError("invalid remote options:\n  " + validation_message(exc, root="remote", sep="\n  ")) from None
        self.options = options
        self.storage_options = dict(storage_options or {})
        self.cache = ShardCache(options.cache_dir or default_cache_dir(), options.max_cache_bytes,
                                options.lock_timeout_s)
        self.sources: list[RemoteTokenShards] = []
        self._releasing = False  # set by attach(): the loader releases shards within the run
        self._fetchers: list[Fetcher] = []
        self._lock = threading.Lock()
        self._counts = {"fetched_shards": 0, "fetched_bytes": 0, "cache_hits": 0, "refetches": 0,
                        "demand_fetches": 0, "prefetched_shards": 0}
        self.wait_s = 0.0
        self._pool: ThreadPoolExecutor | None = None
        self._stop = threading.Event()
        self._prefetch_error: str | None = None
        # Bytes of shards this loader holds pinned (mapped, or prefetched and not mapped yet),
        # and of prefetches in flight; a bounded prefetch waits on _room for them to fit.
        self.pinned_bytes = 0
        self._inflight_bytes = 0
        self._demand_waiting = 0  # demand fetches waiting for room: the prefetcher yields to them
        self._room = threading.Condition()
        self._order: list[tuple[RemoteTokenShards, int]] = []  # prefetched, in plan order (for make_room)
        self._finalizer = weakref.finalize(self, RemoteContext._shutdown, self._stop, [None], self.sources)

    # ---- opening ------------------------------------------------------------------------
    def open_shards(self, uri: str, storage_options: Mapping[str, Any] | None = None,
                    verify: Any = "checksum", source_index: int = -1) -> RemoteTokenShards:
        """Read ``<uri>/manifest.json`` (one request) and return the shard directory."""
        import fsspec

        uri = uri.rstrip("/")
        if uri.endswith("/" + MANIFEST):
            uri = uri[: -len(MANIFEST) - 1]
        protocol = uri.split("://", 1)[0]
        merged = {**self.storage_options, **(storage_options or {})}
        try:
            fs, fs_path = fsspec.core.url_to_fs(uri, **_storage_options(protocol, merged, self.options))
        except (ImportError, ValueError) as exc:
            raise ConfigError(f"{uri}: cannot open this store with fsspec: {exc}") from None
        if protocol in ("s3", "s3a") and "retries" not in merged:
            # s3fs retries 5x with backoff on its own: one attempt, ours retry. fsspec shares
            # the instance only with callers of the same options, config_kwargs included,
            # which only this module sets this way.
            fs.retries = 1
        fetcher = Fetcher(fs, self.options, protocol)
        self._fetchers.append(fetcher)
        murl = f"{uri}/{MANIFEST}"
        raw = fetcher.read_all(murl, f"{fs_path.rstrip('/')}/{MANIFEST}")
        try:
            manifest = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ShardError(murl, f"manifest is not valid JSON: {exc}") from None
        manifest = _check_manifest(murl, manifest, require_digest=True).model_dump(exclude_unset=True)
        for j, s in enumerate(manifest["shards"]):
            if not isinstance(s.get("bytes"), int) or not isinstance(s.get("xxh64", s.get("sha256")), str):
                raise ShardError(murl, f"shards[{j}] has no 'bytes' and 'xxh64': a remote shard is fetched whole and "
                                       "verified against both (rewrite the source with rsdb.write_shards)")
        # One cache folder per (URI, manifest): a source rewritten in place gets a new
        # folder, and its old files age out of the cache instead of being trusted.
        key = hashlib.sha256(uri.encode() + b"\0" + raw).hexdigest()[:24]
        folder = self.cache.root / key
        shards = RemoteTokenShards(uri, manifest, self, fs_path.rstrip("/"), folder, fetcher, verify)
        shards.source_index = source_index
        self.sources.append(shards)
        return shards

    # ---- prefetch -----------------------------------------------------------------------
    def check_capacity(self, needed: Sequence[RemoteTokenShards], block_shards: int = 0) -> None:
        """Refuse, before any download, a bound that cannot hold the shards the loader maps at once.

        With ``block_shards`` 0 that is every shard of the weighted remote sources; with
        blocks, two blocks per source: when a stream moves on to its next block, the
        pool still holds documents of (up to) every shard of the previous one, so the
        largest ``2 x block_shards`` shards of each source may be mapped at once.
        """
        bound = self.options.max_cache_bytes
        if bound is None:
            return
        total = sum(s.shard_bytes(i) for s in needed for i in range(s.num_shards))
        if total <= bound:
            return
        names = ", ".join(s.uri for s in needed)
        if block_shards <= 0:
            raise ConfigError(
                f"max_cache_bytes={bound} cannot hold the {total} bytes of shards of the weighted remote sources "
                f"({names}): with shuffle_block_shards=0 every stream reads a slice of every shard of a weighted "
                "source in each epoch and keeps it mapped, so the cache must hold them all; set "
                "shuffle_block_shards (e.g. 2-4) to visit shards a block at a time and release the rest")
        least = sum(sum(sorted((s.shard_bytes(i) for i in range(s.num_shards)), reverse=True)[: 2 * block_shards])
                    for s in needed)
        if least > bound:
            raise ConfigError(
                f"max_cache_bytes={bound} is below the {least} bytes a stream may map at once with "
                f"shuffle_block_shards={block_shards} (two blocks of shards per weighted remote source, the "
                f"current one and the previous one's documents still in the pool: {names}); raise the bound or "
                "lower shuffle_block_shards")

    # ---- pinned bytes and room ----------------------------------------------------------
    def _pinned(self, delta: int) -> None:
        with self._room:
            self.pinned_bytes += delta
            self._room.notify_all()

    def make_room(self, nbytes: int) -> None:
        """Before a demand fetch under a bound: unpin prefetched shards not mapped yet, latest first.

        The plan merges sources by an estimate, so a shard may be needed before ones
        prefetched for another source; those stay in the cache (evicted only if room
        runs out) and are pinned again when needed.
        """
        bound = self.options.max_cache_bytes
        if bound is None:
            return
        with self._room:
            order = list(self._order)
        for shards, i in reversed(order):
            if self.pinned_bytes + nbytes <= bound:
                break
            shards.unpin_unused(i)

    def mapped_bytes(self) -> int:
        """Bytes of the shards this loader has mapped (pinned and in use by the core)."""
        total = 0
        for shards in self.sources:
            with shards._guard:
                total += sum(shards.shard_bytes(i) for i in shards._pins if i in shards._views)
        return total

    def demand_materialize(self, path: Path, nbytes: int, fill, what: str):
        """``cache.materialize`` for a shard the loader needs now, under a bound.

        Prefetches in flight may hold the room it needs: it unpins prefetched shards not
        mapped yet, and while the cache is still full it waits for downloads in flight to
        land (the prefetcher starts no new one meanwhile), up to ``lock_timeout_s``.
        """
        deadline = time.monotonic() + self.options.lock_timeout_s
        bound = self.options.max_cache_bytes
        with self._room:
            self._demand_waiting += 1
        try:
            while True:
                self.make_room(nbytes)
                try:
                    return self.cache.materialize(path, nbytes, fill, what)
                except CacheFull as exc:
                    if time.monotonic() >= deadline:
                        raise
                    mapped = self.mapped_bytes()
                    if mapped + nbytes > bound:
                        # This loader's own mapped shards fill the bound, and only this thread,
                        # blocked here, would unmap them: waiting cannot help. (Prefetched shards
                        # not mapped yet are not counted: the next make_room unpins them.)
                        raise CacheFull(
                            f"{exc}; this loader itself maps {mapped} of them (shards its pool and current "
                            f"block still read): raise max_cache_bytes above {mapped + nbytes} or lower "
                            "shuffle_block_shards or buffer_docs") from None
                with self._room:
                    self._room.wait(0.05)
        finally:
            with self._room:
                self._demand_waiting -= 1
                self._room.notify_all()

    def start_prefetch(self, plan: Iterable[tuple[RemoteTokenShards, int]]) -> None:
        """Fetch ``plan`` (shard, index) in order, ``prefetch_shards`` at a time, in the background.

        Under ``max_cache_bytes`` the prefetcher runs only as far ahead as the bound
        allows: a shard is fetched once the loader's pinned bytes, the downloads in
        flight and the shard fit, so prefetching never evicts what the loader maps or
        is about to map; it waits for the loader to release shards otherwise.
        """
        depth = self.options.prefetch_shards
        if depth == 0:
            return
        self._pool = ThreadPoolExecutor(max_workers=depth, thread_name_prefix="rsdb-prefetch")
        self._finalizer.detach()
        self._finalizer = weakref.finalize(self, RemoteContext._shutdown, self._stop, [self._pool], self.sources)
        slots = threading.BoundedSemaphore(depth)
        stop, pool = self._stop, self._pool
        ref = weakref.ref(self)

        bound = self.options.max_cache_bytes
        room = self._room
        n_all = max(1, sum(s.num_shards for s in self.sources))

        def fits(ctx: "RemoteContext", size: int) -> bool:
            return bound is None or (not ctx._demand_waiting
                                     and ctx.pinned_bytes + ctx._inflight_bytes + size <= bound)

        def feed() -> None:
            # A thread of its own walks the plan so that construction returns at once. It
            # never holds the context while it waits, so a dropped loader stops it.
            skipped = 0
            for shards, i in plan:
                if stop.is_set() or ref() is None or ref()._prefetch_error:
                    return
                if shards.is_local(i):
                    skipped += 1
                    if skipped >= n_all:  # a whole round already local (an endless plan): wait for a release
                        with room:
                            room.wait(0.5)
                        skipped = 0
                    continue
                skipped = 0
                size = shards.shard_bytes(i)
                with room:
                    while True:
                        ctx = ref()
                        if stop.is_set() or ctx is None:
                            return
                        if fits(ctx, size):
                            break
                        del ctx
                        room.wait(0.5)
                    ctx._inflight_bytes += size
                    ctx._order.append((shards, i))
                    if len(ctx._order) > 4 * n_all:
                        del ctx._order[: len(ctx._order) - 2 * n_all]
                    del ctx
                slots.acquire()
                if stop.is_set():
                    slots.release()
                    return

                def done(_f, size=size) -> None:
                    ctx = ref()
                    with room:
                        if ctx is not None:
                            ctx._inflight_bytes -= size
                        room.notify_all()
                    slots.release()

                fut: Future = pool.submit(RemoteContext._prefetch_one, ref, shards, i)
                fut.add_done_callback(done)

        threading.Thread(target=feed, name="rsdb-prefetch-plan", daemon=True).start()

    @staticmethod
    def _prefetch_one(ref, shards: RemoteTokenShards, i: int) -> None:
        ctx = ref()
        if ctx is None or ctx._stop.is_set() or shards.is_local(i):
            return
        try:
            shards.materialize(i, demand=False)
        except CacheFull as exc:
            if ctx.options.max_cache_bytes is None or not ctx._releasing:
                ctx._prefetch_error = str(exc)  # stop prefetching; a demand fetch reports it if it matters
                log.warning("prefetch stopped: %s", exc)
            else:  # other processes' pins fill the shared cache now; the loader fetches it when needed
                log.info("prefetch of %s skipped: %s", shards.shard_uri(i), exc)
        except Exception as exc:  # noqa: BLE001 - the loader's own fetch of this shard raises it
            log.warning("prefetch of %s failed (the loader retries when it needs it): %s", shards.shard_uri(i), exc)

    # ---- accounting ---------------------------------------------------------------------
    def _account(self, *, fetched: bool = False, nbytes: int = 0, waited: float = 0.0, demand: bool = False,
                 refetched: bool = False) -> None:
        with self._lock:
            c = self._counts
            if refetched:
                c["refetches"] += 1
                return
            if fetched:
                c["fetched_shards"] += 1
                c["fetched_bytes"] += nbytes
                c["demand_fetches" if demand else "prefetched_shards"] += 1
            else:
                c["cache_hits"] += 1
            self.wait_s += waited

    def stats(self) -> dict[str, Any]:
        """Fetch counters, seconds the loader waited for the store, and the cache's state."""
        with self._lock:
            out: dict[str, Any] = dict(self._counts)
            out["wait_s"] = round(self.wait_s, 6)
        out["requests"] = sum(f.requests for f in self._fetchers)
        out["retries"] = sum(f.retries for f in self._fetchers)
        out["local_shards"] = sum(len(s._pins) for s in self.sources)
        out["cache_dir"] = str(self.cache.root)
        out["max_cache_bytes"] = self.options.max_cache_bytes
        out["evicted_files"] = self.cache.stats.evicted_files
        if self._prefetch_error:
            out["prefetch_stopped"] = self._prefetch_error
        return out

    def close(self) -> None:
        """Stop prefetching and release every pin (the loader's shards must be unused)."""
        self._finalizer()

    @staticmethod
    def _shutdown(stop: threading.Event, pool: list, sources: list) -> None:
        stop.set()
        if pool[0] is not None:
            pool[0].shutdown(wait=False, cancel_futures=True)
        for s in sources:
            s.close()


# Permutation steps walked per source to find its shards' first use; past it (a source
# with very many documents per shard stream), the rest follow in manifest order.
_PLAN_WALK = 2_000_000


def _uses(loader: Any, source: int, epochs: Iterable[int]) -> Iterator[tuple[int, int]]:
    """(stream position, unit) of each of ``source``'s units, in the order the stream first reads them.

    The core computes the order from its own stream layout and seed (``first_use``);
    positions of later epochs continue after the earlier ones.
    """
    core = loader._core
    for epoch in epochs:
        flat = core.first_use(source, epoch, _PLAN_WALK)
        span = core.n_local(source) + len(flat) // 2  # unseen shards sit past n_local (see first_use)
        for k in range(0, len(flat), 2):
            yield epoch * span + flat[k], flat[k + 1]


def _keyed(phase: int, share: float, source: int, uses: Iterator[tuple[int, int]]):
    for c, vid in uses:
        yield (phase, c / share, source), vid


def prefetch_plan(loader: Any, ctx: RemoteContext) -> Iterator[tuple[RemoteTokenShards, int]]:
    """The loader's remote shards in the order its stream will read them.

    A stream reads each source's documents in an order fixed by the seed (one
    permutation per epoch, or blocks of ``shuffle_block_shards`` shards), so the shard
    of every next document is known in advance. Sources are merged by expected
    position: the ``c``-th document of a source with share ``w`` comes at about
    ``c / w`` documents into the stream (shares of the first phase that weights the
    source; sources first weighted in a later phase come after the earlier ones).
    Unweighted sources are not prefetched. Without releases (``shuffle_block_shards``
    0) every shard stays mapped, so the plan is epoch 0's order of first use; with
    releases it goes on through every epoch (endless: forever, as far ahead as the
    cache bound lets the prefetcher run). Lazy: the walk runs in the prefetch thread.
    """
    import itertools

    where = {s.shard_uri(i): (s, i) for s in ctx.sources for i in range(s.num_shards)}
    cfg = loader.config
    if cfg.epochs is not None:
        # Finite mode opens every shard, in order, before the first batch (to count each
        # stream's tokens), so that is the order of need first.
        yield from (where[u.path] for u in loader._units if u.path in where)
        if not loader._releasing:
            return
    def epochs() -> Iterable[int]:  # a fresh iterator per source
        if not loader._releasing:
            return [0]
        return range(cfg.epochs) if cfg.epochs is not None else itertools.count()

    remote = {vid for vid, u in enumerate(loader._units) if u.path in where}
    streams = []
    for source in sorted({loader._units[vid].source for vid in remote}):
        name = loader.source_names[source]
        if loader.phases is None:
            total = sum(loader.tokens_per_source) or 1
            phase, share = 0, loader.tokens_per_source[source] / total
        else:
            phase, share = next(((p, ph.shares().get(name, 0.0)) for p, ph in enumerate(loader.phases)
                                 if ph.weights.get(name, 0) > 0), (None, 0.0))
        if phase is None or share <= 0:
            continue
        uses = ((c, vid) for c, vid in _uses(loader, source, epochs()) if vid in remote)
        streams.append(_keyed(phase, share, source, uses))
    for _key, vid in heapq.merge(*streams, key=lambda kv: kv[0]):
        yield where[loader._units[vid].path]


def attach(loader: Any, ctx: RemoteContext) -> None:
    """Check the cache bound against the loader's weighted remote shards, then start prefetching."""
    needed = []
    for shards in ctx.sources:
        name = loader.source_names[shards.source_index]
        if loader.phases is None or any(p.weights.get(name, 0) > 0 for p in loader.phases):
            needed.append(shards)
    ctx._releasing = loader._releasing
    ctx.check_capacity(needed, loader.config.shuffle_block_shards if loader._releasing else 0)
    ctx.start_prefetch(prefetch_plan(loader, ctx))


def split_source_options(sources: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Accept ``{"web": {"path": "s3://...", "storage_options": {...}}}`` next to plain paths.

    Returns the sources as the loader's plain form (name -> path or list of paths) and
    each source's own fsspec options.
    """
    plain: dict[str, Any] = {}
    options: dict[str, dict[str, Any]] = {}
    if not isinstance(sources, Mapping):
        return sources, options  # the loader reports the type error
    for name, value in sources.items():
        if isinstance(value, Mapping):
            unknown = set(value) - {"path", "storage_options"}
            if "path" not in value or unknown:
                raise ConfigError(f"source {name!r}: a mapping needs 'path' and may have 'storage_options'"
                                  + (f" (unknown keys {sorted(unknown)})" if unknown else ""))
            plain[name] = value["path"]
            if value.get("storage_options"):
                options[str(name)] = dict(value["storage_options"])
        else:
            plain[name] = value
    return plain, options


def context_for(paths: Mapping[str, Sequence[str]], *, storage_options: Mapping[str, Any] | None,
                cache_dir: str | os.PathLike | None, max_cache_bytes: int | None,
                remote: Mapping[str, Any] | None) -> RemoteContext | None:
    """A :class:`RemoteContext` if any source path is a URI (None otherwise)."""
    if not any(is_uri(p) for plist in paths.values() for p in plist):
        return None
    opts = dict(remote or {})
    for key, value in (("cache_dir", cache_dir), ("max_cache_bytes", max_cache_bytes)):
        if value is not None:
            opts[key] = os.fspath(value) if key == "cache_dir" else value
    return RemoteContext(opts, storage_options)
