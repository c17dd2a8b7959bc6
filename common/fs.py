"""fsspec file access shared by every package: locations, atomic writes, listing.

Atomic writes: the bytes go to a temporary name in the target's folder
(``.tmp-<random>-<name>``: hidden, so folder readers skip it, and recognisable, so a
cleanup can delete what a killed writer left) and are renamed into place only once
complete. A reader, or a resumed run, never sees half a file; a write that fails
removes its temporary file. On a local disk the rename is ``os.replace`` (atomic on
POSIX); on object stores it is fsspec's copy-then-delete, and an object only appears
once its upload is complete.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

__all__ = ["TMP_PREFIX", "Listing", "atomic_path", "atomic_write", "has_glob", "is_local", "list_files",
           "tmp_name", "url_to_fs"]

#: the prefix of every temporary file an atomic write makes (cleanups look for it)
TMP_PREFIX = ".tmp-"


def url_to_fs(url: str | os.PathLike, storage_options: dict[str, Any] | None = None) -> tuple[Any, str, str]:
    """``(filesystem, path inside it, prefix)`` for a local path or any fsspec URI.

    ``prefix`` is ``""`` for local paths and ``"<protocol>://"`` otherwise, so
    ``prefix + path`` is a URI a user (or another process) can open again.
    """
    import fsspec

    fs, path = fsspec.core.url_to_fs(str(url), **(storage_options or {}))
    return fs, path, "" if is_local(fs) else f"{_protocol(fs)}://"


def _protocol(fs: Any) -> str:
    return fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]


def is_local(fs: Any) -> bool:
    """Whether ``fs`` is the local disk (renames are atomic there)."""
    return _protocol(fs) in ("file", "local")


def tmp_name(final: str) -> str:
    """The temporary sibling an atomic write of ``final`` uses (unique per call)."""
    folder, _, name = str(final).rpartition("/")
    return f"{folder}/{TMP_PREFIX}{uuid.uuid4().hex[:8]}-{name}" if folder else f"{TMP_PREFIX}{uuid.uuid4().hex[:8]}-{name}"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary local path to write ``path`` through; renamed into place on success.

    For writers that need a file name (``pyarrow.parquet.write_table``, ``numpy.save``,
    a format that writes two passes). The folder is created; on an exception the
    temporary file is removed and the target is left as it was.

    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> with atomic_path(f"{d}/x.txt") as tmp:
    ...     _ = tmp.write_text("done")
    >>> open(f"{d}/x.txt").read(), sorted(os.listdir(d))
    ('done', ['x.txt'])
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tmp_name(final.as_posix()))
    try:
        yield tmp
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def atomic_write(path: str | os.PathLike, data: bytes | str, *, fs: Any = None,
                 storage_options: dict[str, Any] | None = None) -> int:
    """Write ``data`` (text is UTF-8 encoded) to ``path`` atomically; returns the bytes written.

    Args:
        path: a local path or fsspec URI; with ``fs``, a path inside that filesystem.
        data: the whole file's content.
        fs: an fsspec filesystem to write through (``path`` is then relative to it).
        storage_options: options for the filesystem named by a URI ``path``.
    """
    payload = data.encode("utf-8") if isinstance(data, str) else data
    if fs is None:
        fs, path, _ = url_to_fs(path, storage_options)
    path = str(path)
    if is_local(fs):
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            f.write(payload)
        return len(payload)
    tmp = tmp_name(path)
    try:
        with fs.open(tmp, "wb") as f:
            f.write(payload)
        fs.mv(tmp, path)
    except BaseException:
        with contextlib.suppress(Exception):
            fs.rm(tmp)
        raise
    return len(payload)


def has_glob(path: str) -> bool:
    """Whether ``path`` holds glob characters (``*``, ``?``, ``[``)."""
    return any(ch in path for ch in "*?[")


def visible(rel: str) -> bool:
    """The default folder filter: no part of the relative path starts with ``.`` or ``_``
    (temporary files of atomic writes, ``_work`` state, ``_SUCCESS`` markers)."""
    return not any(p.startswith((".", "_")) for p in PurePosixPath(rel).parts)


@dataclass
class Listing:
    """What one input (a file, a folder or a glob) expanded to.

    Args:
        fs: the filesystem the paths are in.
        prefix: ``""`` locally, ``"<protocol>://"`` otherwise (``uris`` adds it).
        kind: ``"file"``, ``"folder"`` or ``"glob"``.
        paths: sorted paths inside ``fs``.
    """

    fs: Any
    prefix: str
    kind: str
    paths: list[str] = field(default_factory=list)

    @property
    def uris(self) -> list[str]:
        return [self.prefix + p for p in self.paths]


def list_files(url: str, storage_options: dict[str, Any] | None = None, *,
               keep: Callable[[str], bool] = visible) -> Listing:
    """Expand a file, a folder (searched recursively) or a glob to sorted file paths.

    Args:
        url: a local path or fsspec URI.
        storage_options: options for its filesystem.
        keep: ``relative path -> bool``: which files found inside a folder count
            (default :func:`visible`); a file named directly or matched by a glob always does.

    Raises:
        FileNotFoundError: nothing exists at ``url`` (callers turn it into their own error).
    """
    fs, path, prefix = url_to_fs(url, storage_options)
    if has_glob(path):
        return Listing(fs, prefix, "glob", sorted(fs.glob(path)))
    if fs.isdir(path):
        root = path.rstrip("/") + "/"
        found = (p for p in fs.find(path) if keep(p[len(root):] if p.startswith(root) else p))
        return Listing(fs, prefix, "folder", sorted(found))
    if fs.exists(path):
        return Listing(fs, prefix, "file", [path])
    raise FileNotFoundError(url)
