"""Fixtures for the diagnostics tests: hand-made batches in the RSDB batch format."""

from __future__ import annotations

import numpy as np
import pytest


def _make_batch(rows, *, tokens=None, mask=None):
    """rows: per row a list of (doc_id, source_id, n_tokens, first_position) segments covering L+1 columns."""
    doc, src, pos = [], [], []
    for segs in rows:
        d, s, p = [], [], []
        for doc_id, source_id, n, start in segs:
            d += [doc_id] * n
            s += [source_id] * n
            p += list(range(start, start + n))
        doc.append(d); src.append(s); pos.append(p)
    doc = np.array(doc, np.int64)
    B, L1 = doc.shape
    return {
        "tokens": np.asarray(tokens if tokens is not None else (doc * 7) % 50, np.int32).reshape(B, L1),
        "loss_mask": np.ones((B, L1), bool) if mask is None else np.asarray(mask, bool),
        "position_ids": np.array(pos, np.int32),
        "doc_ids": doc,
        "source_ids": np.array(src, np.int32),
    }


@pytest.fixture
def make_batch():
    return _make_batch
