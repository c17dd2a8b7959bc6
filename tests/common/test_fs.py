"""Atomic writes and the shared file lister (common.fs).

Run: ``.venv/bin/python -m pytest tests/common -q``
"""

from __future__ import annotations

import os
from pathlib import Path

import fsspec
import pytest

from common import fs as cfs
from common.fs import TMP_PREFIX, atomic_path, atomic_write, list_files


def test_atomic_write_replaces_a_file_whole(tmp_path: Path):
    target = tmp_path / "deep" / "x.json"
    assert atomic_write(target, "first") == 5
    assert atomic_write(str(target), b"second") == 6
    assert target.read_bytes() == b"second"
    assert sorted(os.listdir(target.parent)) == ["x.json"]


def test_a_failed_write_leaves_no_partial_file_and_the_old_content(tmp_path: Path, monkeypatch):
    target = tmp_path / "x.json"
    atomic_write(target, "old")

    def fail(src, dst):  # the process dies between writing and renaming
        raise OSError("disk full")

    monkeypatch.setattr(cfs.os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, "new" * 1000)
    monkeypatch.undo()
    assert target.read_text() == "old"
    assert sorted(os.listdir(tmp_path)) == ["x.json"]


def test_atomic_path_removes_its_temporary_file_when_the_writer_fails(tmp_path: Path):
    target = tmp_path / "shard.parquet"
    with pytest.raises(ValueError, match="bad row"):
        with atomic_path(target) as tmp:
            assert tmp.parent == tmp_path and tmp.name.startswith(TMP_PREFIX)
            tmp.write_bytes(b"half a file")
            raise ValueError("bad row")
    assert os.listdir(tmp_path) == []
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"whole")
    assert os.listdir(tmp_path) == ["shard.parquet"] and target.read_bytes() == b"whole"


def test_atomic_write_on_another_filesystem():
    atomic_write("memory://atomic/out/a.json", '{"a": 1}')
    fs = fsspec.filesystem("memory")
    assert fs.cat("/atomic/out/a.json") == b'{"a": 1}'
    assert [p.rsplit("/", 1)[-1] for p in fs.ls("/atomic/out", detail=False)] == ["a.json"]


def _tree(root: Path, names: list[str]) -> None:
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(name)


def test_list_files_expands_folders_globs_and_files(tmp_path: Path):
    _tree(tmp_path, ["a.jsonl", "sub/b.jsonl", "sub/.tmp-1234-c.jsonl", "_work/d.jsonl", "sub/_SUCCESS"])
    folder = list_files(str(tmp_path))
    assert folder.kind == "folder" and folder.prefix == ""
    assert folder.paths == [f"{tmp_path}/a.jsonl", f"{tmp_path}/sub/b.jsonl"]  # hidden and "_" paths skipped
    everything = list_files(str(tmp_path), keep=lambda rel: True)
    assert len(everything.paths) == 5
    glob = list_files(f"{tmp_path}/**/*.jsonl")
    assert glob.kind == "glob" and f"{tmp_path}/_work/d.jsonl" in glob.paths  # a glob says what it wants
    one = list_files(str(tmp_path / "a.jsonl"))
    assert one.kind == "file" and one.uris == [f"{tmp_path}/a.jsonl"]
    with pytest.raises(FileNotFoundError):
        list_files(str(tmp_path / "nope"))


def test_list_files_gives_uris_that_open_again():
    fs = fsspec.filesystem("memory")
    fs.pipe({"/lister/x/1.txt": b"1", "/lister/x/2.txt": b"2"})
    listing = list_files("memory://lister/x")
    assert listing.prefix == "memory://"
    assert [fsspec.open(u).open().read() for u in listing.uris] == [b"1", b"2"]
