"""Tiny real inputs for the curation tests: a slice of the shared corpus plus planted bad records."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def corpus_rows(demo_corpus: Path) -> list[dict]:
    import zstandard

    with open(demo_corpus, "rb") as f:
        reader = io.TextIOWrapper(zstandard.ZstdDecompressor().stream_reader(f), encoding="utf-8")
        rows = []
        for line in reader:
            rows.append(json.loads(line))
            if len(rows) >= 120:
                break
    return rows


def write_jsonl(path: Path, rows: list[dict], bad: bool = True) -> Path:
    """Rows as JSONL with planted bad records at known lines (3: malformed, 5: bad UTF-8, 7: no text)."""
    lines = [json.dumps(r, ensure_ascii=False).encode() for r in rows]
    if bad:
        lines.insert(2, b'{"id": "broken", "text": "unterminated')
        lines.insert(4, b'{"id": "latin1", "text": "caf\xe9"}')
        lines.insert(6, b'{"id": "notext", "body": "no text field"}')
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


@pytest.fixture(scope="session")
def jsonl_writer():
    """The :func:`write_jsonl` helper, as a fixture (test modules here are not a package)."""
    return write_jsonl
