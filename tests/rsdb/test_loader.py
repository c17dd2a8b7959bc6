"""RSDBLoader: exactly-once accounting, determinism, resume, mixtures, phases, errors.

Run: ``.venv/bin/python -m pytest tests/rsdb/test_loader.py -q``
"""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import rsdb
from rsdb import ConfigError, LoaderError, Phase, RSDBLoader, ShardError

from rsdb_testutil import batches_equal, check_batch, collect, make_corpus

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FAST
@given(
    sizes=st.dictionaries(st.sampled_from(["a", "b", "c"]), st.lists(st.integers(0, 60), min_size=0, max_size=25),
                          min_size=1, max_size=3),
    world=st.integers(1, 3), workers=st.integers(1, 2), buffer=st.integers(1, 9), seq_len=st.integers(3, 40),
    batch=st.integers(1, 3), max_chunk=st.one_of(st.none(), st.integers(1, 12)), epochs=st.integers(1, 2),
    packing=st.sampled_from(["rsdb", "sequential"]), seed=st.integers(0, 2**32),
)
def test_exactly_once_across_ranks_and_workers(tmp_path_factory, sizes, world, workers, buffer, seq_len, batch,
                                                max_chunk, epochs, packing, seed):
    root = tmp_path_factory.mktemp("c")
    paths, docs = make_corpus(root, sizes, shard_tokens=50, seed=seed % 1000)
    names = list(paths)
    merged: dict = {}
    counts = []
    for rank in range(world):
        for worker in range(workers):
            loader = RSDBLoader(paths, seq_len=seq_len, batch_size=batch, buffer_docs=buffer, max_chunk=max_chunk,
                                seed=seed, rank=rank, world_size=world, worker_id=worker, num_workers=workers,
                                epochs=epochs, packing=packing)
            n, got = collect(loader, names)
            counts.append(n)
            assert n == loader.num_batches == len(loader)
            assert not set(got) & set(merged), "document streams of ranks/workers must be disjoint"
            merged.update(got)
    assert len(set(counts)) == 1, f"every rank and worker yields the same number of batches, got {counts}"
    expected = {(s, i): d for s, ds in docs.items() for i, d in enumerate(ds) if d}
    assert set(merged) == set(expected)
    for key, toks in merged.items():
        if epochs == 1:
            assert toks == expected[key], f"document {key}: tokens out of order, dropped or duplicated"
        else:
            assert Counter(toks) == Counter({t: c * epochs for t, c in Counter(expected[key]).items()})
    total = sum(map(len, expected.values())) * epochs
    assert counts[0] * batch * (seq_len + 1) >= max(1, total / (world * workers))


def test_every_rank_same_batches_when_streams_unbalanced(tmp_path):
    # One huge document lands in one stream only: the others pad instead of stopping early.
    paths, _ = make_corpus(tmp_path, {"a": [500] + [3] * 7}, shard_tokens=10**6)
    counts = [sum(1 for _ in RSDBLoader(paths, seq_len=16, batch_size=2, buffer_docs=4, epochs=1, rank=r,
                                        world_size=4)) for r in range(4)]
    assert counts == [counts[0]] * 4 and counts[0] == -(-500 // 34)


def test_determinism_and_seed(tmp_path):
    paths, _ = make_corpus(tmp_path, {"a": list(range(1, 80)), "b": [30] * 40})
    kw = dict(seq_len=32, batch_size=2, buffer_docs=8, max_chunk=9)
    a = [next(iter(RSDBLoader(paths, seed=1, **kw))) for _ in range(1)]
    l1, l2, l3 = RSDBLoader(paths, seed=1, **kw), RSDBLoader(paths, seed=1, **kw), RSDBLoader(paths, seed=2, **kw)
    same = all(batches_equal(next(l1), next(l2)) for _ in range(20))
    assert same and batches_equal(a[0], next(iter(RSDBLoader(paths, seed=1, **kw))))
    assert not all(np.array_equal(next(l2)["tokens"], next(l3)["tokens"]) for _ in range(5))


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(k=st.integers(0, 30), buffer=st.integers(1, 16), finite=st.booleans())
def test_resume_at_any_step(tmp_path_factory, k, buffer, finite):
    root = tmp_path_factory.mktemp("r")
    paths, _ = make_corpus(root, {"a": [5, 50, 120, 7] * 6, "b": [33] * 10}, shard_tokens=100)
    kw = dict(seq_len=24, batch_size=2, buffer_docs=buffer, max_chunk=10, seed=7)
    kw.update(epochs=2) if finite else kw.update(phases=[Phase(24 * 2 * 9, {"a": 1, "b": 1}), Phase(10**9, {"b": 1})])
    ref = list(RSDBLoader(paths, **kw)) if finite else [b for b, _ in zip(RSDBLoader(paths, **kw), range(45))]
    ref = [{key: v.copy() for key, v in b.items()} for b in ref]
    first = RSDBLoader(paths, **kw)
    for _ in range(min(k, len(ref))):
        next(first)
    state = json.loads(json.dumps(first.state_dict()))  # JSON-able
    resumed = RSDBLoader(paths, **kw)
    resumed.load_state_dict(state)
    rest = [b for _, b in zip(range(len(ref) - min(k, len(ref))), resumed)]
    assert all(batches_equal(x, y) for x, y in zip(ref[min(k, len(ref)):], rest))
    assert len(rest) == len(ref) - min(k, len(ref))
    full = RSDBLoader(paths, **kw)
    for _ in range(len(ref)):
        next(full)
    assert resumed.stats()["tokens_per_phase"] == full.stats()["tokens_per_phase"]


RESUME_SCRIPT = """
import hashlib, json, sys
import rsdb
paths, kw, state_file, n = json.loads(sys.argv[1])
loader = rsdb.RSDBLoader(paths, **kw)
loader.load_state_dict(json.load(open(state_file)))
h = hashlib.sha256()
for _, b in zip(range(n), loader):
    for key in sorted(b):
        h.update(b[key].tobytes())
print(h.hexdigest())
"""


def test_resume_in_fresh_process(tmp_path):
    import hashlib

    paths, _ = make_corpus(tmp_path, {"a": [40, 3, 200, 17] * 10, "b": [25] * 30}, shard_tokens=150)
    kw = dict(seq_len=32, batch_size=3, buffer_docs=6, seed=11,
              phases=[{"tokens": 32 * 3 * 5, "weights": {"a": 3, "b": 1}}, {"tokens": 10**9, "weights": {"b": 1}}])
    loader = RSDBLoader(paths, **kw)
    for _ in range(7):
        next(loader)
    state_file = tmp_path / "state.json"
    state_file.write_text(json.dumps(loader.state_dict()))
    h = hashlib.sha256()
    for _, b in zip(range(10), loader):
        for key in sorted(b):
            h.update(b[key].tobytes())
    out = subprocess.run([sys.executable, "-c", RESUME_SCRIPT, json.dumps([paths, kw, str(state_file), 10])],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == h.hexdigest()


def test_state_is_small_and_checked(tmp_path):
    paths, _ = make_corpus(tmp_path, {"a": [300] * 200}, shard_tokens=10**5)
    loader = RSDBLoader(paths, seq_len=64, batch_size=4, buffer_docs=128)
    next(loader)
    state = loader.state_dict()
    assert len(json.dumps(state)) < 16 * 1024  # ids and heads, not tokens (the pool holds ~38k tokens)
    other = RSDBLoader(paths, seq_len=64, batch_size=4, buffer_docs=128, seed=5)
    with pytest.raises(LoaderError, match="seed"):
        other.load_state_dict(state)
    with pytest.raises(LoaderError, match="not an RSDB loader state"):
        other.load_state_dict({"format": "x"})


def test_pickle_round_trip(tmp_path):
    paths, _ = make_corpus(tmp_path, {"a": [30] * 50})
    loader = RSDBLoader(paths, seq_len=16, batch_size=2, buffer_docs=4)
    next(loader)
    clone = pickle.loads(pickle.dumps(loader))
    assert all(batches_equal(next(loader), next(clone)) for _ in range(5))


def test_mixture_shares_track_weights(tmp_path):
    rng = np.random.default_rng(3)
    sizes = {name: [int(x) for x in rng.pareto(1.5, 300) * 40 + 5] for name in ("web", "code", "math")}
    sizes["math"] = sizes["math"][:40]  # small: must be repeated
    paths, _ = make_corpus(tmp_path, sizes, shard_tokens=4000)
    weights = {"web": 0.5, "code": 0.3, "math": 0.2}
    loader = RSDBLoader(paths, seq_len=256, batch_size=4, buffer_docs=32, phases=[Phase(10**9, weights)])
    for _ in range(400):
        next(loader)
    s = loader.stats()
    got = s["tokens_per_phase"]["phase1"]
    total = sum(got.values())
    for name, w in weights.items():
        assert abs(got[name] / total - w) < 0.01, (name, got[name] / total, w)
    assert s["epochs"]["math"] > 2 and s["epochs"]["web"] < s["epochs"]["math"]


def test_phase_switch_point_with_several_ranks(tmp_path):
    paths, _ = make_corpus(tmp_path, {"a": [20] * 300, "b": [20] * 300})
    seq_len, batch, world = 16, 2, 3
    per_step = seq_len * batch * world
    phases = [Phase(per_step * 10 + 1, {"a": 1}, "warm"), Phase(per_step * 10, {"b": 1}, "cool")]
    for rank in range(world):
        loader = RSDBLoader(paths, seq_len=seq_len, batch_size=batch, buffer_docs=4, rank=rank, world_size=world,
                            phases=phases)
        batches = [b for b in loader]
        # 10 steps and one token into step 11 belong to "warm": the switch takes effect at step 11 (index 11).
        assert len(batches) == len(loader) == 21
        stats = loader.stats()
        per_row = batch * (seq_len + 1)
        assert sum(stats["tokens_per_phase"]["warm"].values()) == 11 * per_row
        assert sum(stats["tokens_per_phase"]["cool"].values()) == 10 * per_row
        assert all((b["source_ids"] == 0).all() for b in batches[:11])
        assert (batches[-1]["source_ids"] == 1).all()  # pool drained of "a" within the lag


def test_sequential_packing_concatenates_documents(tmp_path):
    paths, docs = make_corpus(tmp_path, {"a": [7, 30, 2, 15, 40, 1]})
    loader = RSDBLoader(paths, seq_len=16, batch_size=2, epochs=1, packing="sequential", buffer_docs=64)
    stream = []
    for b in loader:
        m = b["loss_mask"]
        stream.extend(int(g) for g in b["doc_ids"][m])
    # Each document is emitted in one piece: its id never reappears after another starts.
    runs = [g for i, g in enumerate(stream) if i == 0 or g != stream[i - 1]]
    assert len(runs) == len(set(runs)) == len(docs["a"])


def test_megatron_source(tmp_path):
    from rsdb.megatron import write_megatron

    docs = [np.arange(n, dtype=np.uint16) + 3 for n in (5, 9, 1, 12)]
    write_megatron(tmp_path / "mg", docs, dtype=np.uint16)
    n, got = collect(RSDBLoader({"m": str(tmp_path / "mg")}, seq_len=8, batch_size=1, buffer_docs=2, epochs=1),
                     ["m"])
    assert {k[1]: v for k, v in got.items()} == {i: d.tolist() for i, d in enumerate(docs)}


def test_corrupt_shards_raise_shard_error(tmp_path):
    from rsdb.manifest import dump_manifest

    paths, _ = make_corpus(tmp_path, {"a": [20] * 10}, shard_tokens=10**6, vocab=1000)
    manifest = tmp_path / "a" / "manifest.json"
    m = json.loads(manifest.read_text())
    m["vocab_size"] = 10  # ids up to 999 now exceed the vocabulary: caught in the copy loop
    dump_manifest(manifest.parent, m)  # re-sealed: an unsealed edit is refused on open
    loader = RSDBLoader(paths, seq_len=8, batch_size=1, buffer_docs=2)
    with pytest.raises(ShardError, match=r"token id \d+ is out of range \(vocab_size 10\)") as exc:
        next(loader)
    assert exc.value.path.endswith("shard-00000.arrow")
    with pytest.raises(LoaderError, match="stopped after an error"):
        next(loader)
    m["vocab_size"] = 1000
    dump_manifest(manifest.parent, m)
    shard = tmp_path / "a" / "shard-00000.arrow"
    shard.write_bytes(shard.read_bytes()[:-50])
    with pytest.raises(ShardError, match="truncated"):
        next(RSDBLoader(paths, seq_len=8, batch_size=1))


def test_config_errors_name_the_key(tmp_path):
    paths, _ = make_corpus(tmp_path, {"a": [5] * 3})
    with pytest.raises(ConfigError, match="seq_len"):
        RSDBLoader(paths, seq_len=0)
    with pytest.raises(ConfigError, match="rank 2 must be < world_size 2"):
        RSDBLoader(paths, rank=2, world_size=2)
    with pytest.raises(ConfigError, match="unknown source"):
        RSDBLoader(paths, phases=[Phase(10, {"zzz": 1})])
    with pytest.raises(ConfigError, match="cannot be combined"):
        RSDBLoader(paths, phases=[Phase(10, {"a": 1})], epochs=1)
    with pytest.raises(ConfigError, match="does not exist"):
        RSDBLoader({"x": str(tmp_path / "nope")})
    with pytest.raises(LoaderError, match="too few"):
        RSDBLoader(paths, world_size=4, rank=0)


def test_fields_subset_and_buffer_reuse(tmp_path):
    paths, _ = make_corpus(tmp_path, {"a": [50] * 40})
    loader = RSDBLoader(paths, seq_len=16, batch_size=2, fields=("tokens", "cu_seqlens"))
    b = next(loader)
    assert set(b) == {"tokens", "cu_seqlens"}
    kept = b["tokens"]
    b2 = next(loader)
    assert b2["tokens"] is not kept  # a batch the caller still holds is never overwritten
    check = RSDBLoader(paths, seq_len=16, batch_size=2)
    check_batch(next(check), 16, 2)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzzed_shard_through_loader(tmp_path_factory, data):
    """A corrupted shard never crashes the loader: ShardError, or (with verify) the exact batches."""
    import shutil

    root = tmp_path_factory.mktemp("fz")
    paths, _ = make_corpus(root, {"a": [9, 40, 3, 17, 60, 1, 25]}, shard_tokens=10**6, vocab=300)
    kw = dict(seq_len=16, batch_size=2, buffer_docs=3, epochs=1)
    ref = [{k: v.copy() for k, v in b.items()} for b in RSDBLoader(paths, **kw)]
    shard = root / "a" / "shard-00000.arrow"
    blob = bytearray(shard.read_bytes())
    if data.draw(st.booleans(), label="truncate"):
        blob = blob[: data.draw(st.integers(0, len(blob) - 1), label="cut")]
    else:
        for _ in range(data.draw(st.integers(1, 3), label="flips")):
            blob[data.draw(st.integers(0, len(blob) - 1), label="pos")] ^= data.draw(st.integers(1, 255), label="x")
    bad = tmp_path_factory.mktemp("bad") / "a"
    shutil.copytree(root / "a", bad)
    (bad / "shard-00000.arrow").write_bytes(bytes(blob))
    for verify in (True, False):
        try:
            got = [{k: v.copy() for k, v in b.items()} for b in RSDBLoader({"a": str(bad)}, verify=verify, **kw)]
        except ShardError:
            continue
        if verify or len(blob) != len(shard.read_bytes()):
            assert len(got) == len(ref) and all(batches_equal(x, y) for x, y in zip(got, ref))
        else:
            assert sum(int(b["loss_mask"].sum()) for b in got) == sum(int(b["loss_mask"].sum()) for b in ref)
            assert all(((b["tokens"] >= 0) & (b["tokens"] < 300)).all() for b in got)


@pytest.mark.parametrize("window", [None, 4096, 256])
def test_populate_modes_give_the_same_batches(tmp_path, monkeypatch, window):
    import rsdb.loader as rl

    if window is not None:  # many windows per shard: the core's window bookkeeping
        monkeypatch.setattr(rl, "POPULATE_WINDOW", window)
    paths, _ = make_corpus(tmp_path, {"a": [400, 3, 2000] * 10, "b": [250] * 20}, shard_tokens=3000)
    kw = dict(seq_len=32, batch_size=2, buffer_docs=5, epochs=1)

    def run(**extra):
        return [{k: v.copy() for k, v in b.items()} for b in RSDBLoader(paths, **kw, **extra)]

    ref = run(populate="off")
    for mode in ("pool", "shard", True, False):
        got = run(populate=mode)
        assert len(got) == len(ref) and all(batches_equal(x, y) for x, y in zip(got, ref)), mode
    assert RSDBLoader(paths, **kw).config.populate == "pool"
    with pytest.raises(ConfigError, match="populate"):
        RSDBLoader(paths, populate="eager", **kw)


def test_compact_cu_seqlens_and_kept_views(tmp_path):
    paths, _ = make_corpus(tmp_path, {"a": [3, 50, 7, 1, 90, 4] * 8})
    loader = RSDBLoader(paths, seq_len=24, batch_size=3, buffer_docs=6, seed=1)
    kept = []
    for _ in range(12):
        b = next(loader)
        check_batch(b, 24, 3)
        # one column per segment start of the widest row, plus the closing L+1
        assert b["cu_seqlens"].shape[1] == int(loader._last_segments.max()) + 1
        kept.append((b["cu_seqlens"], b["cu_seqlens"].copy()))
    # a batch's cu_seqlens view keeps its buffer: later batches never overwrite it
    assert all(np.array_equal(view, snapshot) for view, snapshot in kept)


def test_doc_ids_widen_to_int64_for_huge_sources(tmp_path, monkeypatch):
    import rsdb.loader as rl

    paths, _ = make_corpus(tmp_path, {"a": [30, 5, 12] * 4, "b": [9] * 7})
    kw = dict(seq_len=16, batch_size=2, buffer_docs=3, epochs=1, seed=3)
    narrow = [{k: v.copy() for k, v in b.items()} for b in RSDBLoader(paths, **kw)]
    monkeypatch.setattr(rl, "_DOC_ID32_MAX", 5)  # as if source "a" had 2^31 documents or more
    loader = RSDBLoader(paths, **kw)
    assert loader.doc_id_dtype == np.int64
    wide = [{k: v.copy() for k, v in b.items()} for b in loader]
    assert len(wide) == len(narrow)
    for w, n in zip(wide, narrow):
        assert w["doc_ids"].dtype == np.int64 and n["doc_ids"].dtype == np.int32
        assert np.array_equal(w["doc_ids"], n["doc_ids"])
        assert all(np.array_equal(w[k], n[k]) for k in n if k != "doc_ids")
    monkeypatch.setattr(rl, "_MAX_SOURCES", 1)
    with pytest.raises(ConfigError, match="sources; at most 1"):
        RSDBLoader(paths, **kw)


def test_same_path_twice_is_refused(tmp_path):
    paths, _ = make_corpus(tmp_path, {"a": [5] * 3})
    with pytest.raises(ConfigError, match="listed twice"):
        RSDBLoader({"a": paths["a"], "b": [paths["a"]]})
    with pytest.raises(ConfigError, match="doc_ids ran out"):
        rsdb.write_shards(tmp_path / "x", [[1], [2]], doc_ids=["only-one"])
