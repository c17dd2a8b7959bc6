"""A bounded, multi-process local cache of whole shard files.

Remote token shards are memory-mapped by the compiled core, so each one must exist as
a complete, verified local file before it is used. :class:`ShardCache` keeps those
files under one directory that every rank and worker of a node may share:

* **One downloader per file.** A per-file lock (``filelock``) is held while a file is
  fetched; a second process (or thread) that needs the same file waits for it and then
  uses the finished file instead of downloading it again.
* **No half files.** A download goes to ``.<name>.<bytes>.part`` and is renamed into
  place only after the caller verified it (``os.replace`` is atomic on POSIX), so a
  file under its final name is always whole. A process killed mid-download leaves a
  ``.part`` file that the next process holding the lock deletes.
* **A byte bound.** ``max_cache_bytes`` covers finished files plus the full size of
  every download in progress (reserved before the first byte is written). A running
  total lives in ``.usage`` under a cache-wide lock; only when a reservation would
  exceed the bound is the directory scanned, stale reservations of dead processes
  dropped, and files evicted, least recently needed first. Every change on disk that
  the total counts (a ``.part`` created, renamed into place, or deleted) happens under
  that lock with its change of the total, so a scan never recounts a half-done step.
* **In-use files are never evicted.** A process that maps a file holds a shared
  ``flock`` on it (a *pin*); eviction takes an exclusive non-blocking ``flock`` and
  skips what it cannot lock. Locks die with their process, so ``kill -9`` never
  leaves a file pinned forever.

"Needed" is recorded as the file's mtime (touched on every pin), so eviction order is
the order in which loaders last asked for a file, across all processes.

Trade-off: the running total avoids a directory scan per download (10,000 shards would
cost 10,000 scans), at the price of trusting ``.usage`` between scans; a dead
process's reservation stays counted until the next scan, which only ever makes the
cache evict early, never exceed the bound.
"""

from __future__ import annotations

import fcntl
import glob
import logging
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock, Timeout

from .errors import LoaderError

__all__ = ["CacheFull", "Pin", "ShardCache"]

log = logging.getLogger(__name__)

_USAGE = ".usage"
_LOCK = ".lock"
_PART_RE = re.compile(r"^\.(?P<name>.+)\.(?P<size>\d+)\.part$")


class CacheFull(LoaderError):
    """A reservation cannot fit: the files in use already fill ``max_cache_bytes``."""


class Pin:
    """A shared ``flock`` on a cached file: while held, no process evicts the file."""

    def __init__(self, path: Path, fd: int):
        self.path = path
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None

    def __del__(self) -> None:
        self.release()


@dataclass
class CacheStats:
    evicted_files: int = 0
    evicted_bytes: int = 0
    stale_parts: int = 0
    scans: int = 0


def _try_pin(path: Path) -> Pin | None:
    """Pin ``path`` if it exists as a finished file; None if absent or being evicted."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        # An evictor may have unlinked the file between our open and our lock: only a
        # pin on the inode that still has the name counts.
        if os.stat(path).st_ino != os.fstat(fd).st_ino:
            raise FileNotFoundError(path)
    except (BlockingIOError, FileNotFoundError):
        os.close(fd)
        return None
    except OSError:
        os.close(fd)
        raise
    return Pin(path, fd)


class ShardCache:
    """A directory of finished shard files with a byte bound shared by every process.

    Args:
        root: the cache directory (created).
        max_cache_bytes: bound on finished plus in-progress bytes; None: unbounded.
        lock_timeout_s: longest wait for another process's download of the same file
            (or for the cache-wide lock) before a clear error.
    """

    def __init__(self, root: str | os.PathLike, max_cache_bytes: int | None = None, lock_timeout_s: float = 600.0):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.max_cache_bytes = max_cache_bytes
        self.lock_timeout_s = lock_timeout_s
        self.stats = CacheStats()
        self._stats_lock = threading.Lock()

    # ---- locks ------------------------------------------------------------------------
    def _cache_lock(self) -> FileLock:
        return FileLock(self.root / _LOCK, timeout=self.lock_timeout_s)

    def _file_lock(self, path: Path, timeout: float | None = None) -> FileLock:
        return FileLock(path.with_name(f".{path.name}.lock"),
                        timeout=self.lock_timeout_s if timeout is None else timeout)

    def part_path(self, path: Path, size: int) -> Path:
        return path.with_name(f".{path.name}.{int(size)}.part")

    # ---- accounting -------------------------------------------------------------------
    def _read_usage(self) -> int | None:
        try:
            return int((self.root / _USAGE).read_text() or "0")
        except (FileNotFoundError, ValueError):
            return None

    def _write_usage(self, n: int) -> None:
        tmp = self.root / f"{_USAGE}.{os.getpid()}.tmp"
        tmp.write_text(str(max(0, n)))
        os.replace(tmp, self.root / _USAGE)

    def usage(self) -> int:
        """Bytes the cache counts now (finished files plus reservations)."""
        with self._cache_lock():
            n = self._read_usage()
            return self._scan(evict_to=None) if n is None else n

    def _entries(self):
        """(path, size, mtime, is_part) of every data file under the root."""
        for dirpath, _dirs, files in os.walk(self.root):
            for name in files:
                if name.endswith((".lock", ".tmp")) or name == _USAGE:
                    continue
                p = Path(dirpath) / name
                try:
                    st = p.stat()
                except FileNotFoundError:
                    continue
                m = _PART_RE.match(name)
                if m:
                    yield p, int(m.group("size")), st.st_mtime, True
                else:
                    yield p, st.st_size, st.st_mtime, False

    def _scan(self, evict_to: int | None) -> int:
        """Recount the directory (cache lock held); evict LRU files until usage <= evict_to.

        Drops ``.part`` files whose download lock is free (their process died). Returns
        the usage after eviction and rewrites ``.usage``.
        """
        with self._stats_lock:
            self.stats.scans += 1
        used = 0
        finished: list[tuple[float, Path, int]] = []
        for p, size, mtime, is_part in self._entries():
            if is_part:
                final = p.with_name(_PART_RE.match(p.name).group("name"))
                lock = self._file_lock(final, timeout=0)
                try:
                    with lock:
                        p.unlink(missing_ok=True)  # nobody is writing it: a dead download
                    with self._stats_lock:
                        self.stats.stale_parts += 1
                    continue
                except Timeout:
                    used += size  # a live download: its full size is reserved
                    continue
            used += size
            finished.append((mtime, p, size))
        if evict_to is not None and used > evict_to:
            for _mtime, p, size in sorted(finished):
                if used <= evict_to:
                    break
                if self._evict(p):
                    used -= size
                    with self._stats_lock:
                        self.stats.evicted_files += 1
                        self.stats.evicted_bytes += size
        self._write_usage(used)
        return used

    def _evict(self, path: Path) -> bool:
        """Delete ``path`` unless some process has it pinned."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        try:
            path.unlink(missing_ok=True)
            log.debug("evicted %s", path)
            return True
        finally:
            os.close(fd)

    def reserve(self, nbytes: int, what: str, part: Path | None = None) -> None:
        """Count ``nbytes`` against the bound, evicting unpinned files if needed.

        ``part``, the download's ``.part`` file, is created before the cache lock is let
        go: a scan recounts usage from the directory, and a reservation with no file yet
        would be forgotten by the next scan (another thread could then take its room).

        Raises:
            CacheFull: the pinned files and live downloads leave no room.
        """
        with self._cache_lock():
            used = self._read_usage()
            if used is None:
                used = self._scan(evict_to=None)
            bound = self.max_cache_bytes
            if bound is not None and used + nbytes > bound:
                used = self._scan(evict_to=bound - nbytes)
                if used + nbytes > bound:
                    raise CacheFull(
                        f"cache {self.root} is full: {what} needs {nbytes} bytes, max_cache_bytes is {bound} and "
                        f"{used} bytes are pinned by open loaders or being downloaded")
            self._write_usage(used + nbytes)
            if part is not None:
                part.touch()

    def _unreserve(self, parts: list[tuple[Path, int]]) -> None:
        """Delete ``.part`` files and un-count their reservations, in one step under the cache lock.

        Deleting first and un-counting later would let a scan in between recount the
        directory without the file and the late un-count then take its size off a
        second time: ``.usage`` would read low and the next reservation would pass
        the bound by that much.
        """
        with self._cache_lock():
            gone = 0
            for part, size in parts:
                try:
                    part.unlink()
                except FileNotFoundError:
                    continue  # a scan found it dead and dropped it, counting it no more
                gone += size
            used = self._read_usage()
            if used is not None and gone:
                self._write_usage(used - gone)

    def _commit(self, part: Path, path: Path) -> Pin:
        """Pin the finished download, then rename it into place under the cache lock.

        Under the cache lock, a scan (which holds it) never lists a directory half-way
        through the rename: POSIX lets ``readdir`` return the old name, the new one,
        both or neither while a rename runs, and "neither" would leave the shard out of
        the recount while it stays on disk. Pinning before the rename keeps an eviction
        from deleting the brand-new file before the caller's pin is taken.
        """
        fd = os.open(part, os.O_RDONLY | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            with self._cache_lock():
                os.replace(part, path)
        except BaseException:
            os.close(fd)
            raise
        return Pin(path, fd)

    # ---- the one entry point ------------------------------------------------------------
    def materialize(self, path: Path, size: int, fill: Callable[[Path], None], what: str) -> tuple[Pin, bool]:
        """Return a pin on the finished file ``path``, downloading it first if needed.

        ``fill(part)`` must write the complete, verified content to ``part`` (or raise).
        Returns ``(pin, fetched)``: ``fetched`` is False when the file was already there
        (or another process finished it while we waited).
        """
        pin = _try_pin(path)
        if pin is not None:
            os.utime(path)  # "needed now": the LRU order
            return pin, False
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = self._file_lock(path)
        try:
            # another process's download may take seconds: poll often, the wait is the loader's
            with lock.acquire(poll_interval=0.005):
                pin = _try_pin(path)  # another process finished it while we waited
                if pin is not None:
                    os.utime(path)
                    return pin, False
                self._drop_stale_parts(path)
                part = self.part_path(path, size)
                self.reserve(size, what, part)
                try:
                    fill(part)
                    return self._commit(part, path), True
                except BaseException:
                    self._unreserve([(part, size)])
                    raise
        except Timeout:
            raise LoaderError(f"{what}: waited {self.lock_timeout_s:.0f} s for another process's download of {path} "
                              "(lock_timeout_s)") from None

    def _drop_stale_parts(self, path: Path) -> None:
        """Delete (and un-count) ``.part`` files of ``path``; the caller holds its lock."""
        stale = []
        for p in path.parent.glob(f".{glob.escape(path.name)}.*.part"):
            m = _PART_RE.match(p.name)
            if m and m.group("name") == path.name:
                stale.append((p, int(m.group("size"))))
        if stale:
            self._unreserve(stale)
            with self._stats_lock:
                self.stats.stale_parts += len(stale)
