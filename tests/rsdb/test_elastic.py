"""Elastic resume: gather the per-stream states, restore on another topology, exactly once.

Run: ``.venv/bin/python -m pytest tests/rsdb/test_elastic.py -q``
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import rsdb
from rsdb import LoaderError, Phase, RSDBLoader
from rsdb.state import remaining_documents, state_summary

from elastic_testutil import expected_phase_tokens, run_topology
from rsdb_testutil import make_corpus

topology = st.tuples(st.integers(1, 8), st.integers(1, 4), st.integers(1, 16))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    sizes=st.dictionaries(st.sampled_from(["a", "b", "c"]), st.lists(st.integers(0, 60), min_size=1, max_size=30),
                          min_size=1, max_size=3),
    topos=st.lists(topology, min_size=3, max_size=3), buffers=st.lists(st.integers(1, 8), min_size=3, max_size=3),
    cuts=st.lists(st.floats(0, 1), min_size=2, max_size=2), seq_len=st.integers(3, 24),
    max_chunk=st.one_of(st.none(), st.integers(1, 12)), epochs=st.integers(1, 2),
    packing=st.sampled_from(["rsdb", "sequential"]), seed=st.integers(0, 2**32),
)
def test_exactly_once_across_two_topology_changes(tmp_path_factory, sizes, topos, buffers, cuts, seq_len, max_chunk,
                                                  epochs, packing, seed):
    root = tmp_path_factory.mktemp("e")
    paths, docs = make_corpus(root, sizes, shard_tokens=50, seed=seed % 1000)
    out: dict = defaultdict(list)
    state = None
    for hop, ((world, workers, batch), buffer) in enumerate(zip(topos, buffers)):
        kw = dict(seq_len=seq_len, batch_size=batch, buffer_docs=buffer, max_chunk=max_chunk, seed=seed,
                  epochs=epochs, packing=packing)
        steps = None if hop == 2 else cuts[hop]
        res = run_topology(paths, kw, world, workers, steps, state, out)
        assert len(set(res.lengths)) == 1, f"hop {hop}: every rank and worker yields as many batches: {res.lengths}"
        state = json.loads(json.dumps(rsdb.gather_state(res.states)))  # JSON-able
    expected = {(s, i): d for s, ds in docs.items() for i, d in enumerate(ds) if d}
    assert set(out) == set(expected), "a document was dropped or invented"
    for key, toks in out.items():
        if epochs == 1:
            assert toks == expected[key], f"document {key}: tokens dropped, repeated or out of order"
        else:
            assert Counter(toks) == Counter({t: c * epochs for t, c in Counter(expected[key]).items()}), key
    # what the final state still lists are empty documents only (no tokens are left)
    left = remaining_documents(state, res.loaders[(0, 0)])
    assert all(not docs[s][i] for s, i in left), "the end of a finite run leaves tokens behind"
    assert state_summary(state)["tokens"] == state["tokens"]


def test_restore_is_a_pure_function_of_state_and_arguments(tmp_path):
    paths, _ = make_corpus(tmp_path, {"a": [5, 50, 120, 7, 33] * 8, "b": [21, 90] * 10}, shard_tokens=200)
    kw = dict(seq_len=16, batch_size=2, buffer_docs=5, max_chunk=7, seed=9, epochs=1)
    res = run_topology(paths, kw, 3, 2, 4, None, defaultdict(list))
    g1, g2 = rsdb.gather_state(res.states), rsdb.gather_state(list(reversed(res.states)))
    assert g1 == g2, "the global state does not depend on the order of the parts"
    new = dict(kw, batch_size=3, buffer_docs=3)
    runs = []
    for _ in range(2):
        loader = RSDBLoader(paths, rank=1, world_size=2, **new)
        loader.load_state_dict(g1)
        runs.append([{k: v.copy() for k, v in b.items()} for b in loader])
    assert len(runs[0]) == len(runs[1]) > 0
    assert all(all(np.array_equal(a[k], b[k]) for k in a) for a, b in zip(*runs))
    # a per-stream state of a restored loader resumes exactly too (tokens0 and carried work included)
    loader = RSDBLoader(paths, rank=1, world_size=2, **new)
    loader.load_state_dict(g1)
    next(loader)
    mid = json.loads(json.dumps(loader.state_dict()))
    again = RSDBLoader(paths, rank=1, world_size=2, **new)
    again.load_state_dict(mid)
    rest = [b["tokens"].copy() for b in again]
    assert len(rest) == len(runs[0]) - 1 and all(np.array_equal(a["tokens"], b) for a, b in zip(runs[0][1:], rest))


def test_endless_phases_keep_global_boundaries_and_exactly_once(tmp_path):
    # 1.5k documents: the run reads under one epoch of every stream, so no document may repeat.
    rng = np.random.default_rng(1)
    paths, docs = make_corpus(tmp_path, {"web": rng.integers(1, 90, 900).tolist(),
                                         "code": rng.integers(1, 150, 600).tolist()}, shard_tokens=4000)
    phases = [Phase(3000, {"web": 3, "code": 1}, "p1"), Phase(5000, {"web": 1, "code": 1}, "p2"),
              Phase(4000, {"web": 1, "code": 3}, "p3")]
    base = dict(seq_len=15, buffer_docs=6, max_chunk=11, seed=4, phases=phases,
                schedule=[{"tokens": 6000, "batch_size": 4}])
    out: dict = defaultdict(list)
    record: list = []
    state = None
    for world, workers, batch, steps in ((4, 2, 2, 21), (3, 1, 2, 9), (5, 3, 2, None)):
        res = run_topology(paths, dict(base, batch_size=batch), world, workers, steps, state, out, record)
        assert len(set(res.lengths)) == 1
        state = rsdb.gather_state(res.states)
    # the run ended exactly at the end of the last phase, in global tokens
    assert state["tokens"] >= 12000 and state["tokens"] - record[-1][1] < 12000
    shapes = {(g_tokens >= 6000, shape) for _, g_tokens, shape, _ in record}
    assert shapes == {(False, (2, 15)), (True, (4, 15))}, "batch size 2 -> 4 at the first step from 6k tokens on"
    # tokens emitted per phase over all ranks = the steps whose start lies in the phase
    emitted = np.asarray(state["emitted"]).reshape(len(phases), 2).sum(axis=1)
    assert emitted.tolist() == expected_phase_tokens(record, [3000, 8000, 12000])
    # exactly once: each document is either fully emitted, partly (a prefix, the state holds its head),
    # or not started (the state's pieces name it); nothing repeats
    probe = RSDBLoader(paths, **dict(base, batch_size=2))
    left = remaining_documents(state, probe)
    for (src, i), doc in ((k, d) for s, ds in docs.items() for k, d in (((s, i), d) for i, d in enumerate(ds))):
        got = out.get((src, i), [])
        head = left.get((src, i))
        if head is None:
            assert got == doc, f"{src}/{i}: neither finished nor carried"
        else:
            assert got == doc[:head], f"{src}/{i}: emitted {len(got)} tokens, the state's read head is {head}"


def test_gather_refuses_missing_and_inconsistent_parts(tmp_path):
    paths, _ = make_corpus(tmp_path, {"a": [13, 40, 7, 90] * 6})
    kw = dict(seq_len=16, batch_size=2, buffer_docs=4, seed=3, epochs=1)
    res = run_topology(paths, kw, 3, 2, 5, None, defaultdict(list))
    by = {(s["config"]["rank"], s["config"]["worker_id"]): s for s in res.states}
    with pytest.raises(LoaderError, match=r"missing the state of rank 1 \(worker 0\) of 3 ranks x 2 workers"):
        rsdb.gather_state([s for k, s in by.items() if k != (1, 0)])
    with pytest.raises(LoaderError, match=r"missing the state of rank 2 \(all workers\)"):
        rsdb.gather_state([s for k, s in by.items() if k[0] != 2])
    with pytest.raises(LoaderError, match="given twice"):
        rsdb.gather_state(res.states + [by[(0, 0)]])
    later = run_topology(paths, kw, 3, 2, 7, None, defaultdict(list))
    mixed = [s for k, s in by.items() if k[0] != 2] + [s for s in later.states if s["config"]["rank"] == 2]
    with pytest.raises(LoaderError, match="different steps"):
        rsdb.gather_state(mixed)
    other = run_topology(paths, dict(kw, seed=4), 3, 2, 5, None, defaultdict(list))
    with pytest.raises(LoaderError, match="seed"):
        rsdb.gather_state(res.states[:-1] + other.states[-1:])


def test_restore_refuses_other_corpus_edits_and_truncation(tmp_path):
    paths, _ = make_corpus(tmp_path / "c1", {"a": [13, 40, 7, 90] * 6, "b": [5] * 9})
    other, _ = make_corpus(tmp_path / "c2", {"a": [13, 40, 7] * 6, "b": [5] * 9})
    kw = dict(seq_len=16, batch_size=2, buffer_docs=4, seed=3, epochs=1)
    g = rsdb.gather_state(run_topology(paths, kw, 2, 1, 3, None, defaultdict(list)).states)
    with pytest.raises(LoaderError, match=r"different corpus: source 'a' \(6 shards, 24 documents in the state; "
                                          r"5 shards, 18 documents here"):
        RSDBLoader(other, **kw).load_state_dict(g)
    with pytest.raises(LoaderError, match="sources"):
        RSDBLoader({"b": paths["b"], "a": paths["a"]}, **kw).load_state_dict(g)
    with pytest.raises(LoaderError, match="seed"):
        RSDBLoader(paths, **dict(kw, seed=5)).load_state_dict(g)
    path = tmp_path / "global.json"
    rsdb.save_state(g, path)
    text = path.read_text()
    path.write_text(text[: len(text) // 2])
    with pytest.raises(LoaderError, match="truncated"):
        rsdb.load_state(path)
    edited = json.loads(text)
    edited["tokens"] += 34
    path.write_text(json.dumps(edited))
    with pytest.raises(LoaderError, match="digest"):
        rsdb.load_state(path)
    with pytest.raises(LoaderError, match="digest"):
        RSDBLoader(paths, **kw).load_state_dict(edited)
    missing = {k: v for k, v in json.loads(text).items() if k != "pieces"}
    with pytest.raises(LoaderError, match=r"missing \['pieces'\]"):
        RSDBLoader(paths, **kw).load_state_dict(missing)
    rsdb.save_state(g, path)
    assert rsdb.load_state(path) == g


def test_refill_rule_of_the_paper_is_expressible(tmp_path):
    # An internal pool twice the visible buffer, refilled in one batch when it drops to the
    # visible size: buffer_docs = 2 x visible, refill_batch = visible. Exactly once holds.
    paths, docs = make_corpus(tmp_path, {"a": list(range(1, 60)), "b": [30] * 40}, shard_tokens=500)
    loader = RSDBLoader(paths, seq_len=32, batch_size=2, buffer_docs=16, refill_batch=8, epochs=1, seed=2)
    seen, live = [], []
    for b in loader:
        live.append(loader.stats()["pool_docs"])
        seen.append(int(b["loss_mask"].sum()))
    assert sum(seen) == sum(len(d) for ds in docs.values() for d in ds)
    # while the sources last, the pool holds between the visible size and twice that
    assert max(live) == 16 and min(live[:10]) >= 8


def test_megatron_and_shard_sources_reshard_exactly_once(tmp_path):
    rng = np.random.default_rng(5)
    mdocs = [rng.integers(0, 60000, int(n)).tolist() for n in rng.integers(1, 70, 40)]
    rsdb.write_megatron(tmp_path / "m" / "code_text_document", mdocs)
    paths, docs = make_corpus(tmp_path, {"web": rng.integers(1, 50, 30).tolist()}, shard_tokens=300)
    paths = {**paths, "code": str(tmp_path / "m" / "code_text_document")}
    docs = {**docs, "code": mdocs}
    kw = dict(seq_len=20, buffer_docs=5, max_chunk=8, seed=6, epochs=1)
    out: dict = defaultdict(list)
    g = rsdb.gather_state(run_topology(paths, dict(kw, batch_size=2), 3, 2, 0.4, None, out).states)
    res = run_topology(paths, dict(kw, batch_size=3), 2, 3, None, g, out)
    assert len(set(res.lengths)) == 1
    assert dict(out) == {(s, i): d for s, ds in docs.items() for i, d in enumerate(ds) if d}
