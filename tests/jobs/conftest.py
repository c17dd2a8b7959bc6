"""Fixtures of the job-entrypoint tests: a tiny slice of the shared demo corpus.

Run: ``.venv/bin/python -m pytest tests/jobs -q``
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

N_DOCS = 90  # a small slice keeps every job here to a few seconds on 2 cores
N_DUPS = 4  # exact duplicates appended, which curate's exact_dedup must reject
MAX_CHARS = 1500


@pytest.fixture(scope="session")
def tiny_docs(demo_corpus, tmp_path_factory) -> Path:
    """JSONL: the first N_DOCS documents of the demo corpus (text cut to MAX_CHARS) + N_DUPS copies."""
    import zstandard

    rows = []
    with open(demo_corpus, "rb") as f:
        reader = io.TextIOWrapper(zstandard.ZstdDecompressor().stream_reader(f), encoding="utf-8")
        for line in reader:
            doc = json.loads(line)
            doc["text"] = doc["text"][:MAX_CHARS]
            rows.append(doc)
            if len(rows) == N_DOCS:
                break
    rows += rows[:N_DUPS]
    path = tmp_path_factory.mktemp("docs") / "docs.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path
