"""Helpers shared by the RSDB loader tests: tiny corpora and batch bookkeeping."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

import rsdb

def make_corpus(root: Path, sizes: dict[str, list[int]], *, shard_tokens: int = 64, vocab: int = 1000,
                seed: int = 0) -> tuple[dict[str, str], dict[str, list[list[int]]]]:
    """Write one shard dir per source with documents of the given lengths; return paths and docs."""
    rng = np.random.default_rng(seed)
    paths, docs = {}, {}
    for name, lengths in sizes.items():
        d = [rng.integers(0, vocab, size=n).tolist() for n in lengths]
        rsdb.write_shards(root / name, d, source=name, shard_tokens=shard_tokens, vocab_size=vocab)
        paths[name], docs[name] = str(root / name), d
    return paths, docs


def check_batch(b: dict, seq_len: int, batch_size: int) -> None:
    """Shape/dtype contract and internal consistency of one batch."""
    L1 = seq_len + 1
    assert b["tokens"].shape == (batch_size, L1) and b["tokens"].dtype == np.int32
    assert b["loss_mask"].dtype == np.bool_ and b["position_ids"].dtype == np.int32
    assert b["doc_ids"].dtype == np.int32 and b["source_ids"].dtype == np.int16
    cu_all = b["cu_seqlens"]
    assert cu_all.dtype == np.int32 and cu_all.ndim == 2 and cu_all.shape[0] == batch_size
    W = cu_all.shape[1]
    assert 2 <= W <= L1 + 1
    widest = 0
    for r in range(batch_size):
        cu = cu_all[r]
        assert cu[0] == 0 and cu[-1] == L1 and np.all(np.diff(cu) >= 0)
        bounds = [int(x) for x in np.unique(cu)]
        widest = max(widest, len(bounds))
        # after the row's boundaries only L1 repeats (padding to the batch's widest row)
        k = int(np.searchsorted(cu, L1))
        assert (cu[k:] == L1).all() and np.all(np.diff(cu[: k + 1]) > 0)
        mask = b["loss_mask"][r]
        real = int(mask.sum())
        assert mask[:real].all() and not mask[real:].any(), "padding only at the tail"
        for a, e in zip(bounds[:-1], bounds[1:]):
            if a >= real:
                continue
            assert e <= real, "padding is its own segment"
            seg_docs = b["doc_ids"][r, a:e]
            seg_src = b["source_ids"][r, a:e]
            assert (seg_docs == seg_docs[0]).all() and (seg_src == seg_src[0]).all(), "one document per segment"
            assert (b["position_ids"][r, a:e] == np.arange(e - a)).all(), "positions restart per segment"
        if real < L1:
            assert (b["doc_ids"][r, real:] == -1).all() and (b["source_ids"][r, real:] == -1).all()
    assert widest == W, "cu_seqlens is as wide as its widest row, no wider"


def collect(loader, names: list[str], out: dict | None = None) -> tuple[int, dict]:
    """Iterate a loader; return (batches, {(source, doc_index): [token, ...] in emission order})."""
    out = defaultdict(list) if out is None else out
    n = 0
    for b in loader:
        n += 1
        check_batch(b, loader.config.seq_len, loader.config.batch_size)
        m = b["loss_mask"]
        for tok, doc, src in zip(b["tokens"][m], b["doc_ids"][m], b["source_ids"][m]):
            out[(names[int(src)], int(doc))].append(int(tok))
    return n, out


def batches_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
