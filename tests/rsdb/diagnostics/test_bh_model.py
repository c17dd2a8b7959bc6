"""The experiment's tiny GPT: segments, the per-document causal mask, and that masking really isolates documents."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "benchmarks"))
from bh_model import GPTConfig, TinyGPT, batch_loss, document_causal_mask, segment_ids  # noqa: E402


def test_segment_ids_split_on_document_change_and_position_restart():
    doc = torch.tensor([[4, 4, 4, 9, 9, 9, 9, 9]])
    pos = torch.tensor([[7, 8, 9, 0, 1, 0, 1, 2]])  # doc 9 appears as two chunks back to back
    assert segment_ids(doc, pos).tolist() == [[1, 1, 1, 2, 2, 3, 3, 3]]


def test_document_causal_mask():
    seg = torch.tensor([[1, 1, 2, 2]])
    m = document_causal_mask(seg)[0, 0].int().tolist()
    assert m == [[1, 0, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 1, 1]]


def test_documents_do_not_see_each_other():
    torch.manual_seed(0)
    model = TinyGPT(GPTConfig(vocab_size=50, d_model=32, n_layer=2, n_head=2)).eval()
    doc = torch.tensor([[1] * 6 + [2] * 10])
    pos = torch.tensor([list(range(6)) + list(range(10))])
    a = torch.randint(0, 50, (1, 16))
    b = a.clone()
    b[0, :6] = torch.randint(0, 50, (6,))  # change only document 1
    with torch.no_grad():
        la, lb = model(a, pos, doc), model(b, pos, doc)
        # one segment (no document boundary): the same edit now reaches the later tokens
        one_doc, one_pos = torch.zeros_like(doc), torch.arange(16)[None]
        fa, fb = model(a, one_pos, one_doc), model(b, one_pos, one_doc)
    assert torch.allclose(la[0, 6:], lb[0, 6:], atol=1e-5)
    assert not torch.allclose(la[0, :6], lb[0, :6])
    assert not torch.allclose(fa[0, 6:], fb[0, 6:], atol=1e-5)


def test_batch_loss_masks_padding():
    torch.manual_seed(0)
    model = TinyGPT(GPTConfig(vocab_size=20, d_model=16, n_layer=1, n_head=2))
    L1 = 9
    batch = {
        "tokens": np.random.default_rng(0).integers(0, 20, (2, L1)).astype(np.int32),
        "loss_mask": np.ones((2, L1), bool),
        "position_ids": np.tile(np.arange(L1, dtype=np.int32), (2, 1)),
        "doc_ids": np.array([[0] * L1, [1] * L1], np.int64),
    }
    loss, n = batch_loss(model, batch, torch.device("cpu"))
    assert n == 16 and torch.isfinite(loss)
    batch["loss_mask"][1, 4:] = False
    batch["tokens"][1, 4:] = 0  # padding content must not matter
    loss2, n2 = batch_loss(model, batch, torch.device("cpu"))
    assert n2 == 11
    batch["tokens"][1, 5:] = 7
    loss3, _ = batch_loss(model, batch, torch.device("cpu"))
    assert torch.allclose(loss2, loss3)
