"""One writer per output folder: a lock object created atomically in the folder, naming its holder.

Two runs writing one output folder delete and rewrite each other's work files, and one of
them then fails deep inside a Ray task. So every writer (``curate``, the tokenize job, the
tokenizer trainer) first creates ``_lock.json`` in its output folder with an *exclusive*
create: ``O_CREAT | O_EXCL`` on a local disk, a conditional put (``If-None-Match: *``,
fsspec's ``"xb"`` mode) on object stores that have one (S3). The second writer finds the
object there and is refused at once with the folder and the holder's host, pid and start
time in the message.

Stale locks (the holder was killed with ``kill -9``, the node died):

* same host: the holder is gone when its pid does not exist, is a zombie, or belongs to a
  process started at another time than the one recorded (the pid was reused);
* another host: processes there cannot be seen, so the holder rewrites ``heartbeat`` every
  ``heartbeat_s`` seconds from a daemon thread, and its lock is stale once the heartbeat
  is older than ``stale_after_s``.

A stale lock is taken over with a warning: it is read again (it must still be the same
lock), removed, and the exclusive create is retried, so of two runs taking over one stale
lock at the same time only one wins. Stores without an exclusive create (fsspec
filesystems that reject mode ``"x"``) fall back to write-then-read-back, which narrows but
does not close the race; the warning says so.

>>> import tempfile
>>> with OutputLock(tempfile.mkdtemp(), job="demo") as lock:
...     lock.held
True
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from datetime import datetime, timezone
from typing import Any

from common.errors import TrinityError
from common.fs import atomic_write

log = logging.getLogger(__name__)

LOCK_NAME = "_lock.json"
#: a holder on another host is presumed dead after this long without a heartbeat
STALE_AFTER_S = 600.0
HEARTBEAT_S = 30.0


class OutputLocked(TrinityError):
    """Another live run holds the output folder's lock.

    Args:
        folder: the output folder.
        holder: the lock's content (host, pid, job, started_at, heartbeat).
    """

    def __init__(self, folder: str, holder: dict[str, Any]):
        self.folder, self.holder = folder, holder
        super().__init__(
            f"{folder} is in use by another {holder.get('job', 'run')} (host {holder.get('host')}, "
            f"pid {holder.get('pid')}, started {holder.get('started_at')}): wait for it to finish or use "
            f"another output folder; if that run is dead, remove {folder.rstrip('/')}/{LOCK_NAME}")


def _proc_start(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (Linux), or None where unknown."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces or parentheses: split after the last ")".
    fields = stat[stat.rindex(b")") + 2:].split()
    return int(fields[19])


def _proc_state(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    return stat[stat.rindex(b")") + 2:].split()[0].decode()


def _alive(pid: int, start: int | None) -> bool:
    """Whether process ``pid`` (started at ``start`` ticks, when known) is still running here."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        pass
    if _proc_state(pid) == "Z":  # killed, not yet reaped by its parent
        return False
    now = _proc_start(pid)
    return start is None or now is None or now == start


def stale_reason(holder: dict[str, Any], *, stale_after_s: float = STALE_AFTER_S,
                 now: float | None = None) -> str | None:
    """Why the lock ``holder`` is stale, or ``None`` while its holder may be alive."""
    now = time.time() if now is None else now
    if holder.get("host") == socket.gethostname() and isinstance(holder.get("pid"), int):
        if not _alive(holder["pid"], holder.get("pid_start")):
            return f"its process {holder['pid']} on this host ({holder['host']}) is gone"
        return None
    beat = holder.get("heartbeat")
    if not isinstance(beat, (int, float)):
        return "it has no heartbeat"
    if now - beat > stale_after_s:
        return f"no heartbeat from host {holder.get('host')} for {now - beat:.0f}s (limit {stale_after_s:.0f}s)"
    return None


class OutputLock:
    """The lock of one output folder (local path or fsspec URI); a context manager.

    Args:
        url: the output folder.
        storage_options: fsspec options for ``url``.
        job: what holds it, for the message a refused run prints (``curate``, ``tokenize``...).
        stale_after_s: a holder on another host is dead after this long without a heartbeat.
        heartbeat_s: how often the holder refreshes its heartbeat.
    """

    def __init__(self, url: str, storage_options: dict[str, Any] | None = None, *, job: str = "run",
                 stale_after_s: float = STALE_AFTER_S, heartbeat_s: float = HEARTBEAT_S):
        import fsspec

        self.url = str(url).rstrip("/")
        self.fs, root = fsspec.core.url_to_fs(self.url, **(storage_options or {}))
        proto = self.fs.protocol if isinstance(self.fs.protocol, str) else self.fs.protocol[0]
        self.local = proto in ("file", "local")
        self.path = f"{root.rstrip('/')}/{LOCK_NAME}"
        self.job, self.stale_after_s, self.heartbeat_s = job, stale_after_s, heartbeat_s
        self.token = uuid.uuid4().hex
        self.held = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ content

    def _content(self) -> dict[str, Any]:
        pid = os.getpid()
        return {"job": self.job, "host": socket.gethostname(), "pid": pid, "pid_start": _proc_start(pid),
                "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "heartbeat": time.time(), "token": self.token}

    def read(self) -> dict[str, Any] | None:
        """The current lock's content; ``None`` when there is none; ``{}`` when unreadable."""
        if not self.local:
            self.fs.invalidate_cache(self.path)
        try:
            with self.fs.open(self.path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return None
        try:
            holder = json.loads(data)
        except ValueError:  # a holder killed mid-write; treated as stale below
            return {}
        return holder if isinstance(holder, dict) else {}

    # ------------------------------------------------------------------ create / remove

    def _create(self, content: dict[str, Any]) -> bool:
        """Exclusive create; False when a lock is already there."""
        data = json.dumps(content, indent=2).encode()
        if self.local:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            return True
        try:
            with self.fs.open(self.path, "xb") as f:
                f.write(data)
            return True
        except FileExistsError:
            return False
        except (ValueError, NotImplementedError, TypeError):  # the store has no exclusive create
            if self.read() is not None:
                return False
            log.warning("%s: this store has no exclusive create; locking is best effort", self.url)
            with self.fs.open(self.path, "wb") as f:
                f.write(data)
            return (self.read() or {}).get("token") == self.token
        except OSError as e:  # S3 answers a failed If-None-Match with 412 PreconditionFailed
            if "Precondition" in str(e) or "412" in str(e):
                return False
            raise

    def _remove(self) -> None:
        try:
            self.fs.rm(self.path)
        except FileNotFoundError:
            pass

    # ------------------------------------------------------------------ public

    def acquire(self) -> "OutputLock":
        """Take the lock, or take over a stale one with a warning.

        Raises:
            OutputLocked: a live run holds it.
        """
        for _ in range(5):  # a lock removed between our create and read is simply retried
            if self._create(self._content()):
                self.held = True
                self._start_heartbeat()
                return self
            holder = self.read()
            if holder is None:
                continue
            reason = stale_reason(holder, stale_after_s=self.stale_after_s) if holder else "it is unreadable"
            if reason is None:
                raise OutputLocked(self.url, holder)
            if self.read() != holder:  # someone else took it over meanwhile: look again
                continue
            log.warning("%s: taking over a stale lock of %s (host %s, pid %s, started %s): %s", self.url,
                        holder.get("job", "a run"), holder.get("host"), holder.get("pid"),
                        holder.get("started_at"), reason)
            self._remove()
        raise OutputLocked(self.url, self.read() or {"job": "run", "host": "?", "pid": "?"})

    def release(self) -> None:
        """Remove the lock if this process still holds it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self.held and (self.read() or {}).get("token") == self.token:
            self._remove()
        self.held = False

    def __enter__(self) -> "OutputLock":
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()

    def __getstate__(self) -> dict[str, Any]:
        raise TypeError("an OutputLock belongs to the process that took it; do not ship it to workers")

    # ------------------------------------------------------------------ heartbeat

    def _start_heartbeat(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, name=f"lock-heartbeat:{self.url}", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            current = self.read() or {}
            if current.get("token") != self.token:
                log.error("%s: lost the output lock to host %s pid %s", self.url, current.get("host"),
                          current.get("pid"))
                return
            content = {**current, "heartbeat": time.time()}
            data = json.dumps(content, indent=2).encode()
            if self.local:  # atomic replace: a reader never sees half a lock
                atomic_write(self.path, data)
            else:
                with self.fs.open(self.path, "wb") as f:
                    f.write(data)


def output_lock(url: str, storage_options: dict[str, Any] | None = None, *, job: str = "run") -> OutputLock:
    """The lock of ``url`` (not yet taken): ``with output_lock(out, job="tokenize"): ...``."""
    return OutputLock(url, storage_options, job=job)
