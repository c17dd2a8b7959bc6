"""rsdb.packing: label masks, flash-attn varlen arguments and transformers' packed path.

Run: ``.venv/bin/python -m pytest tests/rsdb/test_packing.py -q``
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import rsdb
from rsdb.packing import IGNORE_INDEX, hf_packed, label_mask, varlen_args
from rsdb_testutil import make_corpus

torch = pytest.importorskip("torch", reason="torch is an optional extra")


def _batches(root, lengths, *, seq_len, batch_size, max_chunk, epochs=1):
    paths, _ = make_corpus(root, {"a": lengths, "b": lengths[::-1]}, vocab=97)
    loader = rsdb.RSDBLoader(paths, seq_len=seq_len, batch_size=batch_size, buffer_docs=3,
                             max_chunk=max_chunk, epochs=epochs, seed=5)
    return [{k: v.copy() for k, v in b.items()} for b in loader]


def _segments_by_position_ids(b, n):
    """Reference: flat segment starts over the first n tokens of every row, from position_ids == 0."""
    starts = []
    for r in range(b["tokens"].shape[0]):
        pad_prev = False
        for j in range(n):
            pad = b["source_ids"][r, j] < 0
            if j == 0 or (b["position_ids"][r, j] == 0 and not (pad and pad_prev)):
                starts.append(r * n + j)
            pad_prev = pad
    return starts + [b["tokens"].shape[0] * n]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lengths=st.lists(st.integers(1, 40), min_size=1, max_size=8), seq_len=st.integers(1, 24),
       batch_size=st.integers(1, 4), max_chunk=st.one_of(st.none(), st.integers(1, 9)))
def test_varlen_segments_equal_position_id_boundaries(tmp_path_factory, lengths, seq_len, batch_size, max_chunk):
    root = tmp_path_factory.mktemp("c")
    for b in _batches(root, lengths, seq_len=seq_len, batch_size=batch_size, max_chunk=max_chunk):
        for inputs, n in ((True, seq_len), (False, seq_len + 1)):
            want = _segments_by_position_ids(b, n)
            cu, max_len = varlen_args(b, inputs=inputs)
            assert cu.dtype == np.int32 and cu.ndim == 1
            assert cu.tolist() == want
            assert max_len == max(np.diff(want))
            # without the loader's cu_seqlens field, position_ids give the same answer
            no_cu = {k: v for k, v in b.items() if k != "cu_seqlens"}
            assert varlen_args(no_cu, inputs=inputs)[0].tolist() == want
            # torch in, torch out, same values
            tcu, tmax = varlen_args({k: torch.from_numpy(v) for k, v in b.items()}, inputs=inputs)
            assert tcu.dtype == torch.int32 and tcu.tolist() == want and tmax == max_len


def test_label_mask_is_false_where_a_label_starts_a_segment(tmp_path):
    batches = _batches(tmp_path, [5, 9, 3, 30, 2], seq_len=12, batch_size=2, max_chunk=4)
    starts_seen = 0
    for b in batches:
        m = label_mask(b)
        assert m.shape == (2, 12) and m.dtype == np.bool_
        for r in range(2):
            for j in range(12):  # label j is tokens[r, j + 1], predicted from tokens[r, j]
                same_segment = b["position_ids"][r, j + 1] != 0
                starts_seen += not same_segment
                assert m[r, j] == (same_segment and bool(b["loss_mask"][r, j + 1])), (r, j)
        # the option keeps the loader's own mask
        assert (label_mask(b, cross_boundary=True) == b["loss_mask"][:, 1:]).all()
        tm = label_mask({k: torch.from_numpy(v) for k, v in b.items()})
        assert tm.dtype == torch.bool and (tm.numpy() == m).all()
    assert starts_seen > 0, "the corpus must put segment starts inside rows"


def test_hf_packed_gives_the_loss_of_separate_documents(tmp_path):
    """transformers' packed path with hf_packed inputs == every segment run on its own."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=64)
    model = LlamaForCausalLM(cfg).eval()
    model.config._attn_implementation = "sdpa"
    b = _batches(tmp_path, [5, 9, 3, 30, 2, 11], seq_len=15, batch_size=2, max_chunk=6)[0]
    packed = {k: torch.from_numpy(v) for k, v in hf_packed(b).items()}
    assert packed["input_ids"].shape == (1, 2 * 16)
    with torch.no_grad():
        logits = model(input_ids=packed["input_ids"], position_ids=packed["position_ids"], use_cache=False).logits[0]
        labels = packed["labels"][0]
        keep = labels[1:] != IGNORE_INDEX
        packed_terms = torch.nn.functional.cross_entropy(logits[:-1][keep], labels[1:][keep], reduction="none")
        # reference: each segment alone, labels inside the segment only
        ref = []
        for r in range(2):
            cu = sorted(set(b["cu_seqlens"][r].tolist()))
            for a, e in zip(cu[:-1], cu[1:]):
                seg = torch.from_numpy(b["tokens"][r, a:e].astype(np.int64))[None]
                live = b["loss_mask"][r, a + 1:e]
                if e - a < 2 or not live.any():
                    continue
                seg_logits = model(input_ids=seg, use_cache=False).logits[0, :-1][torch.from_numpy(live)]
                ref.append(torch.nn.functional.cross_entropy(seg_logits, seg[0, 1:][torch.from_numpy(live)],
                                                             reduction="none"))
    ref_terms = torch.cat(ref)
    assert int(keep.sum()) == int(label_mask(b).sum()) == ref_terms.numel()
    torch.testing.assert_close(packed_terms, ref_terms, rtol=1e-4, atol=1e-4)


def test_reference_varlen_attention_matches_block_diagonal_mask():
    """varlen_args' segments, fed to a per-segment attention, equal a block-diagonal causal mask."""
    pos = torch.tensor([[0, 1, 2, 0, 1, 0, 1, 2, 3], [0, 1, 2, 3, 0, 0, 1, 2, 0]], dtype=torch.int32)
    b = {"position_ids": pos, "loss_mask": torch.ones_like(pos, dtype=torch.bool)}
    cu, max_len = varlen_args(b, inputs=False)
    assert cu.tolist() == [0, 3, 5, 9, 13, 14, 17, 18] and max_len == 4
    torch.manual_seed(1)
    q, k, v = (torch.randn(18, 2, 8) for _ in range(3))  # (total tokens, heads, head_dim): flash-attn layout
    out = torch.empty_like(q)
    for a, e in zip(cu[:-1].tolist(), cu[1:].tolist()):
        out[a:e] = torch.nn.functional.scaled_dot_product_attention(
            q[a:e].transpose(0, 1), k[a:e].transpose(0, 1), v[a:e].transpose(0, 1), is_causal=True).transpose(0, 1)
    seg = torch.cumsum((pos.reshape(-1) == 0).to(torch.int64), 0)
    mask = (seg[:, None] == seg[None, :]) & torch.ones(18, 18, dtype=torch.bool).tril()
    full = torch.nn.functional.scaled_dot_product_attention(q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1),
                                                           attn_mask=mask).transpose(0, 1)
    torch.testing.assert_close(out, full)


def test_missing_field_is_a_config_error():
    with pytest.raises(rsdb.ConfigError, match="position_ids"):
        label_mask({"tokens": np.zeros((1, 4), np.int32)})


def test_bh_model_loss_skips_labels_that_start_a_segment():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    from bh_model import GPTConfig, TinyGPT, batch_loss

    torch.manual_seed(0)
    model = TinyGPT(GPTConfig(vocab_size=20, d_model=16, n_layer=1, n_head=2))
    batch = {
        "tokens": np.random.default_rng(0).integers(0, 20, (1, 9)).astype(np.int32),
        "loss_mask": np.ones((1, 9), bool),
        "position_ids": np.array([[0, 1, 2, 3, 0, 1, 2, 0, 1]], np.int32),
        "doc_ids": np.array([[0, 0, 0, 0, 1, 1, 1, 2, 2]], np.int32),
    }
    loss, n = batch_loss(model, batch, torch.device("cpu"))
    assert n == 8  # labels processed (no padding here)
    with torch.no_grad():
        base = float(batch_loss(model, batch, torch.device("cpu"))[0])
    # a label at a segment start is excluded: the mean equals the mean over the 6 in-document labels
    with torch.no_grad():
        logits = model(torch.as_tensor(batch["tokens"][:, :-1]).long(),
                       torch.as_tensor(batch["position_ids"][:, :-1]).long(), torch.as_tensor(batch["doc_ids"][:, :-1]))
    per = torch.nn.functional.cross_entropy(logits[0].float(), torch.as_tensor(batch["tokens"][0, 1:]).long(),
                                            reduction="none")
    keep = torch.tensor([True, True, True, False, True, True, False, True])
    assert abs(float(per[keep].mean()) - base) < 1e-5 and abs(float(loss) - base) < 1e-5
