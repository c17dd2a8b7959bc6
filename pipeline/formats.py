"""Input formats and compression codecs by file name.

One table for every reader of raw or curated corpora (the curation pipeline and the
tokenizer trainer), so a file reads the same way everywhere. Imports nothing heavy.
"""

from __future__ import annotations

from pathlib import PurePosixPath

JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")
PARQUET_SUFFIXES = (".parquet", ".pq")
ARROW_SUFFIXES = (".arrow", ".feather", ".ipc")
TEXT_SUFFIXES = (".txt", ".text", ".md")
# fsspec's own inference knows ".zst" but not ".zstd": name the codec explicitly.
COMPRESSION_CODECS = {".gz": "gzip", ".zst": "zstd", ".zstd": "zstd", ".bz2": "bz2", ".xz": "xz"}


def split_compression(path: str) -> tuple[str, str | None]:
    """``(file name without the codec suffix, fsspec codec or None)``, name lower-cased."""
    name = PurePosixPath(path).name.lower()
    for suffix, codec in COMPRESSION_CODECS.items():
        if name.endswith(suffix):
            return name[: -len(suffix)], codec
    return name, None


def compression_of(path: str) -> str | None:
    """The fsspec compression codec a file name implies (``"zstd"``, ``"gzip"``...), or ``None``."""
    return split_compression(path)[1]


def detect_format(path: str) -> str | None:
    """``"jsonl"``, ``"parquet"``, ``"arrow"`` or ``"text"`` by file name, or ``None``.

    >>> detect_format("s3://b/part-0.jsonl.zstd"), detect_format("x.pq"), detect_format("notes.md.gz")
    ('jsonl', 'parquet', 'text')
    """
    name, _ = split_compression(path)
    if name.endswith(JSONL_SUFFIXES):
        return "jsonl"
    if name.endswith(PARQUET_SUFFIXES):
        return "parquet"
    if name.endswith(ARROW_SUFFIXES):
        return "arrow"
    if name.endswith(TEXT_SUFFIXES):
        return "text"
    return None
