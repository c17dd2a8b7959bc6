"""The curation output location: one fsspec filesystem, every write atomic (see :mod:`common.fs`)."""

from __future__ import annotations

import io
import json
import os
from typing import Any

import pyarrow as pa

from common.fs import atomic_write, is_local, url_to_fs


class OutFS:
    """The output location on any fsspec filesystem.

    Atomicity: a file is written under a temporary name in the same folder and
    renamed into place, so a reader (or a resumed run) never sees half a file. On
    object stores the rename is a copy plus delete; the run's done markers, written
    last, are what make a unit count as finished there.
    """

    def __init__(self, url: str, storage_options: dict[str, Any] | None = None):
        self.url = url.rstrip("/")
        self.storage_options = dict(storage_options or {})
        self.fs, self.root, _ = url_to_fs(self.url, self.storage_options)
        self.local = is_local(self.fs)
        self.root = self.root.rstrip("/")

    def __getstate__(self) -> dict[str, Any]:
        return {"url": self.url, "storage_options": self.storage_options}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["url"], state["storage_options"])  # type: ignore[misc]

    def path(self, *parts: str) -> str:
        return "/".join([self.root, *parts])

    def uri(self, *parts: str) -> str:
        """A path users can open (with the protocol for remote stores)."""
        p = self.path(*parts)
        return p if self.local else f"{self.url.split('://')[0]}://{p}"

    def _fresh(self, path: str) -> None:
        if not self.local:  # object-store listings are cached; other workers may have written since
            self.fs.invalidate_cache(path)

    def exists(self, *parts: str) -> bool:
        self._fresh(self.path(*parts))
        return self.fs.exists(self.path(*parts))

    def makedirs(self, *parts: str) -> None:
        if self.local:
            os.makedirs(self.path(*parts), exist_ok=True)

    def ls(self, *parts: str) -> list[str]:
        """Names (not paths) in a folder; empty when it does not exist."""
        p = self.path(*parts)
        self._fresh(p)
        try:
            return sorted(x.rstrip("/").rsplit("/", 1)[-1] for x in self.fs.ls(p, detail=False))
        except FileNotFoundError:
            return []

    def rm(self, *parts: str, recursive: bool = False) -> None:
        p = self.path(*parts)
        try:
            self.fs.rm(p, recursive=recursive)
        except FileNotFoundError:
            pass

    def write_bytes(self, data: bytes, *parts: str) -> None:
        atomic_write(self.path(*parts), data, fs=self.fs)

    def write_json(self, obj: Any, *parts: str) -> None:
        self.write_bytes(json.dumps(obj, indent=2, sort_keys=True).encode(), *parts)

    def read_json(self, *parts: str) -> Any:
        with self.fs.open(self.path(*parts), "rb") as f:
            return json.loads(f.read())

    def write_parquet(self, table: pa.Table, *parts: str, compression: str = "zstd",
                      level: int | None = 3) -> int:
        """Write one Parquet file atomically; returns its size in bytes."""
        import pyarrow.parquet as pq

        buf = io.BytesIO()
        pq.write_table(table, buf, compression=None if compression == "none" else compression,
                       compression_level=level if compression in ("zstd", "gzip") else None)
        data = buf.getvalue()
        self.write_bytes(data, *parts)
        return len(data)

    def read_parquet(self, *parts: str, columns: list[str] | None = None) -> pa.Table:
        import pyarrow.parquet as pq

        with self.fs.open(self.path(*parts), "rb") as f:
            return pq.read_table(io.BytesIO(f.read()), columns=columns)
