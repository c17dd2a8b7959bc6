"""rsdb.torch: DataLoader with several workers, exactly once, exact resume.

Run: ``.venv/bin/python -m pytest tests/rsdb/test_torch.py -q``
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch", reason="torch is an optional extra")

from rsdb import RSDBLoader  # noqa: E402
from rsdb.torch import RSDBIterableDataset, StateTracker  # noqa: E402
from rsdb_testutil import make_corpus  # noqa: E402

KW = dict(seq_len=16, batch_size=2, buffer_docs=4, seed=3)


def _interleaved(paths, n_workers, **kw):
    loaders = [iter(RSDBLoader(paths, worker_id=w, num_workers=n_workers, **kw)) for w in range(n_workers)]
    out, w = [], 0
    while loaders:
        try:
            out.append({k: v.copy() for k, v in next(loaders[w % len(loaders)]).items()})
            w += 1
        except StopIteration:
            loaders.pop(w % len(loaders))
    return out


def test_two_workers_match_loaders_and_cover_everything(tmp_path):
    paths, docs = make_corpus(tmp_path, {"a": [13, 40, 7, 90] * 5, "b": [21] * 12})
    ds = RSDBIterableDataset(paths, epochs=1, **KW)
    dl = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2)
    got = list(dl)
    assert all(isinstance(b["tokens"], torch.Tensor) and b["tokens"].dtype == torch.int32 for b in got)
    ref = _interleaved(paths, 2, epochs=1, **KW)
    assert len(got) == len(ref)
    for g, r in zip(got, ref):
        for k in r:
            assert (g[k].numpy() == r[k]).all(), k
    emitted = sum(int(b["loss_mask"].sum()) for b in got)
    assert emitted == sum(len(d) for ds_ in docs.values() for d in ds_)


def test_resume_with_workers(tmp_path):
    paths, _ = make_corpus(tmp_path, {"a": [13, 40, 7, 90] * 8, "b": [21] * 20})
    ds = RSDBIterableDataset(paths, epochs=1, return_state=True, **KW)
    dl = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2)
    tracker = StateTracker(num_workers=2)
    full = [tracker.update(b) for b in dl]
    tracker = StateTracker(num_workers=2)
    it = iter(dl)
    for _ in range(5):  # stop after an odd number of steps: worker 1 is next
        tracker.update(next(it))
    del it
    ds2 = RSDBIterableDataset(paths, epochs=1, return_state=True, **KW)
    ds2.load_state_dict(tracker.state_dict())
    rest = [b for b in torch.utils.data.DataLoader(ds2, batch_size=None, num_workers=2)]
    assert len(rest) == len(full) - 5
    for a, b in zip(full[5:], rest):
        assert torch.equal(a["tokens"], b["tokens"]) and torch.equal(a["doc_ids"], b["doc_ids"])


def test_worker_batches_share_one_block_and_match_plain(tmp_path):
    paths, _ = make_corpus(tmp_path, {"a": [13, 40, 7, 90] * 5, "b": [21] * 12})
    plain = list(torch.utils.data.DataLoader(RSDBIterableDataset(paths, epochs=1, shared_memory=False, **KW),
                                             batch_size=None))
    shared = list(torch.utils.data.DataLoader(RSDBIterableDataset(paths, epochs=1, shared_memory=True, **KW),
                                              batch_size=None))
    in_workers = list(torch.utils.data.DataLoader(RSDBIterableDataset(paths, epochs=1, **KW), batch_size=None,
                                                  num_workers=1))
    assert len(plain) == len(shared) == len(in_workers)
    for p, s, w in zip(plain, shared, in_workers):
        assert p.keys() == s.keys() == w.keys()
        for k in p:
            assert p[k].dtype == s[k].dtype == w[k].dtype and torch.equal(p[k], s[k]) and torch.equal(p[k], w[k]), k
        # all arrays of a worker batch are views of one shared-memory block
        ptrs = {w[k].untyped_storage().data_ptr() for k in w}
        assert len(ptrs) == 1 and w["tokens"].is_shared()


def test_next_into_checks_buffers(tmp_path):
    import numpy as np

    from rsdb import ConfigError

    paths, _ = make_corpus(tmp_path, {"a": [13, 40, 7] * 4})
    loader = RSDBLoader(paths, **KW)
    layout = loader.buffer_layout()
    bufs = {k: np.zeros(shape, dtype) for k, (shape, dtype) in layout.items()}
    b = loader.next_into(bufs)
    assert b["tokens"] is bufs["tokens"] and b["cu_seqlens"].base is bufs["cu_seqlens"]
    assert b["cu_seqlens"].shape[0] == KW["batch_size"]
    with pytest.raises(ConfigError, match="doc_ids"):
        loader.next_into({**bufs, "doc_ids": np.zeros(layout["doc_ids"][0], np.int64)})
    with pytest.raises(ConfigError, match="needs arrays"):
        loader.next_into({"tokens": bufs["tokens"]})
