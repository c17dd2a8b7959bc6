"""Model-free microbatch statistics on hand-made batches in the RSDB batch format."""

from __future__ import annotations

import numpy as np
import pytest

from rsdb.diagnostics import BatchFormatError, LoaderStats, entropy_bits, microbatch_stats


def test_single_document_microbatch(make_batch):
    # Sequential packing of one long document: both rows continue document 5.
    b = make_batch([[(5, 0, 9, 100)], [(5, 0, 9, 109)]])
    s = microbatch_stats(b, num_sources=2)
    assert s.tokens == 16  # labels are columns 1..8 of each row
    assert s.distinct_docs == 1
    assert s.max_doc_share == 1.0
    assert s.source_tokens == [16, 0]
    assert s.source_entropy == 0.0
    # label-side positions: 101..108 and 110..117
    assert s.mean_doc_position == pytest.approx(np.mean(list(range(101, 109)) + list(range(110, 118))))
    assert s.padding_frac == 0.0


def test_mixed_microbatch(make_batch):
    # Row 0: doc 1 (source 0) for 5 tokens, doc 2 (source 1) for 4; row 1: doc 3 (source 1) for 9.
    b = make_batch([[(1, 0, 5, 0), (2, 1, 4, 0)], [(3, 1, 9, 0)]])
    s = microbatch_stats(b)
    # label side drops column 0 of each row: doc1 4 tokens, doc2 4, doc3 8
    assert s.tokens == 16
    assert s.distinct_docs == 3
    assert s.max_doc_share == pytest.approx(8 / 16)
    assert s.source_tokens == [4, 12]
    assert s.source_entropy == pytest.approx(entropy_bits(np.array([4, 12])))
    assert s.source_entropy == pytest.approx(-(0.25 * np.log2(0.25) + 0.75 * np.log2(0.75)))
    assert s.mean_doc_position == pytest.approx(np.mean([1, 2, 3, 4, 0, 1, 2, 3] + list(range(1, 9))))


def test_padding_is_excluded(make_batch):
    mask = np.ones((1, 9), bool)
    mask[0, 5:] = False  # padded tail at the end of a finite epoch
    b = make_batch([[(1, 0, 5, 0), (0, 0, 4, 0)]], mask=mask)
    s = microbatch_stats(b)
    assert s.tokens == 4 and s.distinct_docs == 1 and s.max_doc_share == 1.0
    assert s.padding_frac == pytest.approx(4 / 8)


def test_token_entropy(make_batch):
    tokens = np.array([[9, 0, 1, 0, 1], [9, 2, 3, 2, 3]])  # labels 0,1,0,1,2,3,2,3: 4 symbols, uniform
    b = make_batch([[(1, 0, 5, 0)], [(2, 0, 5, 0)]], tokens=tokens)
    assert microbatch_stats(b).token_entropy == pytest.approx(2.0)
    same = make_batch([[(1, 0, 5, 0)]], tokens=np.full((1, 5), 4))
    assert microbatch_stats(same).token_entropy == 0.0


def test_all_padding_batch(make_batch):
    b = make_batch([[(1, 0, 5, 0)]], mask=np.zeros((1, 5), bool))
    s = microbatch_stats(b)
    assert (s.tokens, s.distinct_docs, s.max_doc_share, s.padding_frac) == (0, 0, 0.0, 1.0)


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda b: b.pop("doc_ids"), r"missing key\(s\) \['doc_ids'\]"),
        (lambda b: b.__setitem__("position_ids", b["position_ids"][:, :-1]), r"batch\['position_ids'\] has shape"),
        (lambda b: b.__setitem__("tokens", b["tokens"][0]), r"must be \(B, L\+1\)"),
        (lambda b: b.__setitem__("source_ids", b["source_ids"] - 1), "negative id"),
        (lambda b: b.__setitem__("source_ids", b["source_ids"] + 3), "only 2 sources"),
    ],
)
def test_bad_batches_name_the_key(make_batch, mutate, match):
    b = make_batch([[(1, 0, 5, 0)], [(2, 1, 5, 0)]])
    mutate(b)
    with pytest.raises(BatchFormatError, match=match):
        microbatch_stats(b, num_sources=2)


def test_not_a_dict():
    with pytest.raises(BatchFormatError, match="dict of arrays"):
        microbatch_stats([1, 2, 3])


def test_collector_steps_and_summary(make_batch):
    dominated = make_batch([[(1, 0, 9, 0)], [(1, 0, 9, 9)]])
    mixed = make_batch([[(2, 0, 3, 0), (3, 1, 3, 0), (4, 1, 3, 0)], [(5, 0, 9, 0)]],
                       tokens=np.arange(18).reshape(2, 9))
    ls = LoaderStats(micro_per_step=2, source_names=["web", "code"])
    ls.collect(iter([dominated, mixed, dominated, mixed, dominated]), steps=10)  # stream ends early
    assert len(ls.micro) == 5
    steps = ls.step_stats()
    assert len(steps) == 2  # the 5th microbatch starts an incomplete step
    h_dom, h_mix = ls.micro[0].token_entropy, ls.micro[1].token_entropy
    assert h_mix > h_dom
    assert steps[0]["entropy_heterogeneity"] == pytest.approx(max(h_dom, h_mix) - (h_dom + h_mix) / 2)
    assert steps[0]["dominated_micro"] == 1
    s = ls.summary()
    assert s["microbatches"] == 5 and s["steps"] == 2
    assert s["dominated_frac"] == pytest.approx(3 / 5)
    assert s["distinct_docs"]["max"] == 4 and s["distinct_docs"]["min"] == 1
    assert set(s["source_shares"]) == {"web", "code"}
    assert sum(s["source_shares"].values()) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="unknown metric"):
        ls.values("nope")


def test_collector_rejects_bad_step_size():
    with pytest.raises(ValueError, match="micro_per_step"):
        LoaderStats(micro_per_step=0)
