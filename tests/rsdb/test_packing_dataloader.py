"""rsdb.torch conventions: ``len(dataset)``, ``batch_size=None``, packing helpers on DataLoader batches.

Run: ``.venv/bin/python -m pytest tests/rsdb/test_packing_dataloader.py -q``
"""

from __future__ import annotations

import doctest

import pytest

torch = pytest.importorskip("torch", reason="torch is an optional extra")

import rsdb  # noqa: E402
import rsdb.packing  # noqa: E402
from rsdb.torch import RSDBIterableDataset  # noqa: E402
from rsdb_testutil import make_corpus  # noqa: E402

KW = dict(seq_len=16, batch_size=2, buffer_docs=4, seed=3)


@pytest.mark.parametrize("workers", [0, 2])
def test_len_counts_the_batches_a_finite_pass_yields(tmp_path, workers):
    paths, _ = make_corpus(tmp_path, {"a": [13, 40, 7, 90] * 5, "b": [21] * 12})
    ds = RSDBIterableDataset(paths, epochs=1, **KW)
    dl = ds.dataloader(num_workers=workers)
    got = list(dl)
    assert len(got) == len(ds) == len(dl) > 0
    assert all(b["tokens"].shape == (2, 17) for b in got)


def test_len_of_a_phased_schedule_is_its_steps(tmp_path):
    paths, _ = make_corpus(tmp_path, {"a": [30] * 8})
    phases = [{"tokens": 2 * 16 * 7, "weights": {"a": 1.0}}]
    ds = RSDBIterableDataset(paths, phases=phases, **KW)
    assert len(ds) == 7 == ds.num_batches(3) == len(list(ds.dataloader(num_workers=0)))


def test_endless_without_phases_has_no_len(tmp_path):
    paths, _ = make_corpus(tmp_path, {"a": [30] * 8})
    with pytest.raises(TypeError, match="no length"):
        len(RSDBIterableDataset(paths, **KW))


def test_dataloader_refuses_a_batch_size(tmp_path):
    paths, _ = make_corpus(tmp_path, {"a": [30] * 8})
    ds = RSDBIterableDataset(paths, epochs=1, **KW)
    with pytest.raises(rsdb.LoaderError, match="batch_size=None"):
        ds.dataloader(batch_size=1)


def test_packing_helpers_on_dataloader_batches(tmp_path):
    paths, _ = make_corpus(tmp_path, {"a": [5, 9, 3, 30] * 3})
    for b in RSDBIterableDataset(paths, epochs=1, max_chunk=6, **KW).dataloader():
        cu, max_len = rsdb.varlen_args(b)
        assert cu.dtype == torch.int32 and int(cu[-1]) == 2 * 16 and max_len <= 16
        assert rsdb.label_mask(b).shape == (2, 16)


def test_packing_doctests():
    result = doctest.testmod(rsdb.packing, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0
