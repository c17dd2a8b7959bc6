"""RSDB over object storage: moto's S3 server on loopback (through s3fs), file:// and
memory:// URIs, against the same corpus read from local files.

Run: ``.venv/bin/python -m pytest tests/rsdb/test_remote.py -q``
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import fsspec
import numpy as np
import pytest

import rsdb
from rsdb.errors import ConfigError, ShardError
from rsdb_testutil import make_corpus

pytest.importorskip("s3fs")
pytest.importorskip("moto.server")
from remote_testutil import S3, Proxy, cache_bytes, dir_bytes  # noqa: E402

HERE = Path(__file__).parent
SIZES = {"web": [180, 40, 300, 90] * 12, "code": [250, 60, 120] * 10}
KW = dict(seq_len=128, batch_size=2, buffer_docs=8, seed=11)
FAST = {"retries": 2, "backoff_s": 0.02, "timeout_s": 5.0}


@pytest.fixture(scope="module")
def s3():
    server = S3()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    paths, _docs = make_corpus(root, SIZES, shard_tokens=1500)
    return paths


def tokens_of(loader) -> np.ndarray:
    return np.stack([b["tokens"].copy() for b in loader])


def all_arrays(loader) -> list[dict]:
    return [{k: v.copy() for k, v in b.items()} for b in loader]


def shard_count(paths) -> int:
    return sum(len(rsdb.open_shards(p).shards) for p in paths.values())


def upload(s3, paths, prefix) -> dict[str, str]:
    return {name: s3.upload_dir(p, f"{prefix}/{name}") for name, p in paths.items()}


def test_s3_batches_bit_identical_and_exactly_once(s3, corpus, tmp_path):
    uris = upload(s3, corpus, "same")
    for rank in range(2):
        kw = dict(KW, epochs=1, rank=rank, world_size=2)
        ref = all_arrays(rsdb.RSDBLoader(corpus, **kw))
        loader = rsdb.RSDBLoader(uris, storage_options=s3.options(), cache_dir=tmp_path / "cache", remote=FAST, **kw)
        got = all_arrays(loader)
        assert len(got) == len(ref) > 3
        for a, b in zip(ref, got):
            assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
        st = loader.stats()["remote"]
        # rank 0 fetched every shard once; rank 1 found them all in the shared cache
        assert st["fetched_shards"] == (shard_count(corpus) if rank == 0 else 0)
        assert st["local_shards"] == shard_count(corpus) and st["retries"] == 0 and st["refetches"] == 0


def test_startup_reads_only_manifests(s3, corpus, tmp_path):
    uris = upload(s3, corpus, "startup")
    proxy = Proxy(s3.endpoint)
    try:
        loader = rsdb.RSDBLoader(uris, storage_options=s3.options(proxy.endpoint), cache_dir=tmp_path / "c",
                                 remote={**FAST, "prefetch_shards": 0}, **KW)
        # construction: one GET per source (its manifest), no listing, nothing per shard
        assert sum(proxy.counts.values()) == len(uris)
        assert all(p.endswith("/manifest.json") for p in proxy.counts)
        next(loader)
        assert proxy.gets(".arrow") >= 1
        st = loader.stats()["remote"]
        assert st["demand_fetches"] == st["fetched_shards"] >= 1 and st["wait_s"] > 0
    finally:
        proxy.stop()


@pytest.mark.parametrize("scheme", ["file", "memory"])
def test_file_and_memory_uris(scheme, corpus, tmp_path):
    if scheme == "file":
        uris = {name: f"file://{p}" for name, p in corpus.items()}
    else:
        fs = fsspec.filesystem("memory")
        uris = {}
        for name, p in corpus.items():
            for f in Path(p).iterdir():
                fs.pipe(f"/rsdb-test-{tmp_path.name}/{name}/{f.name}", f.read_bytes())
            uris[name] = f"memory://rsdb-test-{tmp_path.name}/{name}"
    kw = dict(KW, epochs=1)
    ref = tokens_of(rsdb.RSDBLoader(corpus, **kw))
    loader = rsdb.RSDBLoader(uris, cache_dir=tmp_path / "cache", **kw)
    assert np.array_equal(tokens_of(loader), ref)
    assert loader.stats()["remote"]["fetched_shards"] == shard_count(corpus)


def test_per_source_storage_options_and_pickle(s3, corpus, tmp_path):
    import pickle

    uris = upload(s3, corpus, "persource")
    sources = {"web": {"path": uris["web"], "storage_options": s3.options()}, "code": corpus["code"]}
    kw = dict(KW, epochs=1)
    ref = tokens_of(rsdb.RSDBLoader(corpus, **kw))
    loader = rsdb.RSDBLoader(sources, cache_dir=tmp_path / "cache", **kw)
    first = next(loader)["tokens"].copy()
    clone = pickle.loads(pickle.dumps(loader))
    rest = tokens_of(clone)
    assert np.array_equal(np.concatenate([first[None], rest]), ref)


def test_cache_bound_holds_while_old_files_are_evicted(s3, corpus, tmp_path):
    """A cache shared with an older dataset: its files go, least recently needed first."""
    old = upload(s3, corpus, "old")
    new = upload(s3, corpus, "new")
    cache = tmp_path / "cache"
    total = sum(s["bytes"] for p in corpus.values() for s in rsdb.open_shards(p).shards)
    kw = dict(KW, epochs=1)
    first = rsdb.RSDBLoader(old, storage_options=s3.options(), cache_dir=cache, remote=FAST, **kw)
    tokens_of(first)
    first._remote.close()  # the old run is over: its pins go
    del first
    assert dir_bytes(cache) >= total
    bound = total + total // 3  # room for the new dataset, not for both
    peak = [0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], cache_bytes(cache))
            time.sleep(0.002)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        loader = rsdb.RSDBLoader(new, storage_options=s3.options(), cache_dir=cache, max_cache_bytes=bound,
                                 remote=FAST, **kw)
        got = tokens_of(loader)
    finally:
        stop.set()
        sampler.join()
    assert np.array_equal(got, tokens_of(rsdb.RSDBLoader(corpus, **kw)))
    st = loader.stats()["remote"]
    assert st["evicted_files"] > 0 and st["fetched_shards"] == shard_count(corpus)
    assert peak[0] <= bound, (peak[0], bound)

    with pytest.raises(ConfigError, match="max_cache_bytes"):  # refused before any download
        rsdb.RSDBLoader(new, storage_options=s3.options(), cache_dir=tmp_path / "c2", max_cache_bytes=total // 2,
                        remote=FAST, **kw)
    assert not (tmp_path / "c2").exists() or dir_bytes(tmp_path / "c2") < 4096


def _child(args: dict, tmp: Path, name: str) -> subprocess.Popen:
    spec = tmp / f"{name}.json"
    spec.write_text(json.dumps(args))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE.parents[1]), os.environ.get("PYTHONPATH", "")]))
    return subprocess.Popen([sys.executable, str(HERE / "remote_child.py"), str(spec)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)


def test_two_processes_share_one_cache(s3, corpus, tmp_path):
    uris = upload(s3, corpus, "twoproc")
    proxy = Proxy(s3.endpoint, latency_s=0.01)
    cache = tmp_path / "cache"
    try:
        procs = []
        for rank in range(2):
            args = {"sources": uris, "out": str(tmp_path / f"r{rank}.npy"),
                    "loader": dict(KW, epochs=1, rank=rank, world_size=2, cache_dir=str(cache),
                                   storage_options=s3.options(proxy.endpoint), remote=FAST)}
            procs.append(_child(args, tmp_path, f"r{rank}"))
        stats = []
        for p in procs:
            out, err = p.communicate(timeout=120)
            assert p.returncode == 0, err.decode()[-3000:]
            stats.append(json.loads(out.decode().strip().splitlines()[-1]))
    finally:
        proxy.stop()
    for rank in range(2):
        ref = tokens_of(rsdb.RSDBLoader(corpus, **dict(KW, epochs=1, rank=rank, world_size=2)))
        assert np.array_equal(np.load(tmp_path / f"r{rank}.npy"), ref)
    # both ranks map every shard, but each shard was downloaded by one of them only
    n = shard_count(corpus)
    assert stats[0]["fetched_shards"] + stats[1]["fetched_shards"] == n
    assert proxy.gets(".arrow") == n  # one ranged GET per (small) shard, none twice
    assert not list(cache.rglob("*.part"))


def test_kill_during_download_then_restart(s3, tmp_path):
    root = tmp_path / "big"
    paths, _ = make_corpus(root, {"big": [20_000] * 30}, shard_tokens=10**6)  # one 2.4 MB shard
    uri = s3.upload_dir(paths["big"], "kill/big")
    cache = tmp_path / "cache"
    proxy = Proxy(s3.endpoint, bandwidth=1 << 20)  # ~2.3 s for the shard
    try:
        args = {"sources": {"big": uri}, "out": str(tmp_path / "dead.npy"),
                "loader": dict(KW, epochs=1, cache_dir=str(cache), storage_options=s3.options(proxy.endpoint),
                               remote={**FAST, "chunk_bytes": 1 << 18})}
        proc = _child(args, tmp_path, "dead")
        deadline = time.monotonic() + 60
        parts: list[Path] = []
        while time.monotonic() < deadline and not any(p.stat().st_size > 0 for p in parts if p.exists()):
            parts = list(cache.rglob("*.part"))
            time.sleep(0.02)
        assert parts, "the child never started its download"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL
        assert any(p.exists() for p in parts)  # the half file is left behind ...
        assert not list(cache.rglob("*.arrow"))  # ... and nothing under a final name
    finally:
        proxy.stop()
    loader = rsdb.RSDBLoader({"big": uri}, storage_options=s3.options(), cache_dir=cache, remote=FAST,
                             **dict(KW, epochs=1))
    got = tokens_of(loader)
    assert np.array_equal(got, tokens_of(rsdb.RSDBLoader(paths, **dict(KW, epochs=1))))
    assert loader.stats()["remote"]["fetched_shards"] == 1
    assert not list(cache.rglob("*.part"))


def test_corrupt_object_is_fetched_once_more_then_shard_error(s3, corpus, tmp_path):
    uris = upload(s3, corpus, "corrupt")
    key = "corrupt/web/shard-00001.arrow"
    data = bytearray(s3.get(key))
    data[len(data) // 2] ^= 0x10  # same size, one flipped bit in the token buffer
    s3.put(key, bytes(data))
    proxy = Proxy(s3.endpoint)
    try:
        loader = rsdb.RSDBLoader(uris, storage_options=s3.options(proxy.endpoint), cache_dir=tmp_path / "c",
                                 remote={**FAST, "prefetch_shards": 0}, **KW)
        with pytest.raises(ShardError, match="after one refetch") as err:
            tokens_of(loader)
        assert err.value.path == f"{uris['web']}/shard-00001.arrow"
        assert proxy.gets("/web/shard-00001.arrow") == 2  # fetched, then once more
        assert loader.stats()["remote"]["refetches"] == 1
        web = next(s for s in loader._remote.sources if s.uri == uris["web"])
        assert not web.shard_path(1).exists()  # never renamed into the cache
    finally:
        proxy.stop()


def test_missing_object_fails_at_once(s3, corpus, tmp_path):
    uris = upload(s3, corpus, "missing")
    s3.delete("missing/code/shard-00000.arrow")
    loader = rsdb.RSDBLoader(uris, storage_options=s3.options(), cache_dir=tmp_path / "c",
                             remote={"retries": 5, "backoff_s": 1.0, "prefetch_shards": 0}, **KW)
    t0 = time.monotonic()
    with pytest.raises(ShardError, match="not found") as err:
        tokens_of(loader)
    assert time.monotonic() - t0 < 3  # no retry loop with 1 s backoffs
    assert err.value.path == f"{uris['code']}/shard-00000.arrow"
    assert loader.stats()["remote"]["retries"] == 0


def test_transient_503s_are_retried(s3, corpus, tmp_path):
    uris = upload(s3, corpus, "flaky")
    proxy = Proxy(s3.endpoint)
    try:
        loader = rsdb.RSDBLoader(uris, storage_options=s3.options(proxy.endpoint), cache_dir=tmp_path / "c",
                                 remote={**FAST, "retries": 3, "prefetch_shards": 0}, **KW)
        proxy.fail_next(2)  # the first two shard GETs answer 503
        ref = rsdb.RSDBLoader(corpus, **KW)
        for _ in range(12):
            assert np.array_equal(next(loader)["tokens"], next(ref)["tokens"])
        assert loader.stats()["remote"]["retries"] == 2
    finally:
        proxy.stop()


def test_store_gone_mid_run_is_a_clear_error_within_the_timeout(s3, corpus, tmp_path):
    uris = upload(s3, corpus, "gone")
    proxy = Proxy(s3.endpoint)
    opts = {"retries": 2, "backoff_s": 0.1, "timeout_s": 1.0, "prefetch_shards": 0}
    loader = rsdb.RSDBLoader(uris, storage_options=s3.options(proxy.endpoint), cache_dir=tmp_path / "c",
                             remote=opts, **dict(KW, buffer_docs=1))
    next(loader)
    proxy.stop()
    t0 = time.monotonic()
    with pytest.raises(ShardError, match="fetch failed after 3 attempts") as err:
        for _ in range(1000):
            next(loader)
    took = time.monotonic() - t0
    # 3 attempts of at most timeout_s each plus backoffs (0.1 + 0.2, up to 1.5x jitter)
    assert took < 3 * opts["timeout_s"] + 0.45 + 1.0, took
    assert "/shard-" in err.value.path and err.value.path.startswith("s3://")


def test_mixture_file_with_s3_sources(s3, corpus, tmp_path):
    import yaml

    uris = upload(s3, corpus, "mix")
    phases = [{"name": "p1", "tokens": 2000, "weights": {"web": 0.7, "code": 0.3}},
              {"name": "p2", "tokens": 2000, "weights": {"web": 0.2, "code": 0.8}}]
    remote = {"sources": {n: {"path": u, "storage_options": s3.options()} for n, u in uris.items()}, "phases": phases}
    local = {"sources": {n: {"path": p} for n, p in corpus.items()}, "phases": phases}
    (tmp_path / "remote.yaml").write_text(yaml.safe_dump(remote))
    (tmp_path / "local.yaml").write_text(yaml.safe_dump(local))
    kw = dict(seq_len=64, batch_size=2, buffer_docs=4, seed=2)
    got = tokens_of(rsdb.RSDBLoader.from_mixture(tmp_path / "remote.yaml", cache_dir=tmp_path / "c", **kw))
    ref = tokens_of(rsdb.RSDBLoader.from_mixture(tmp_path / "local.yaml", **kw))
    assert got.shape[0] > 10 and np.array_equal(got, ref)


@pytest.mark.parametrize("rank", [0, 1])
def test_prefetch_plan_is_the_order_of_first_use(rank, corpus, tmp_path):
    """The plan (computed from the seed) predicts the order in which the loader asks for shards."""
    from rsdb.remote import RemoteTokenShards, prefetch_plan

    uris = {name: f"file://{p}" for name, p in corpus.items()}
    asked: list[str] = []
    original = RemoteTokenShards.materialize

    def spy(self, i, *, demand):
        if demand and not self.is_local(i):
            asked.append(self.shard_uri(i))
        return original(self, i, demand=demand)

    RemoteTokenShards.materialize = spy
    try:
        kw = dict(KW, buffer_docs=4, rank=rank, world_size=2, phases=[{"tokens": 10**9, "weights": {"web": 1}}])
        loader = rsdb.RSDBLoader(uris, cache_dir=tmp_path / "c", remote={"prefetch_shards": 0}, **kw)
        plan = [s.shard_uri(i) for s, i in prefetch_plan(loader, loader._remote)]
        for _ in range(40):
            next(loader)
    finally:
        RemoteTokenShards.materialize = original
    web = len(rsdb.open_shards(corpus["web"]).shards)
    assert sorted(plan) == sorted(f"{uris['web']}/shard-{i:05d}.arrow" for i in range(web))  # code: weight 0
    assert len(asked) == web and asked == plan


def test_dataloader_workers_share_the_cache(s3, corpus, tmp_path):
    """rsdb.torch workers (separate processes) read s3:// sources through one cache folder."""
    torch = pytest.importorskip("torch")
    from rsdb.torch import RSDBIterableDataset

    uris = upload(s3, corpus, "workers")
    kw = dict(KW, epochs=1)
    ds = RSDBIterableDataset(uris, storage_options=s3.options(), cache_dir=str(tmp_path / "cache"), remote=FAST, **kw)
    got = [b["tokens"].numpy().copy() for b in torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2)]
    # the DataLoader's round robin over the two workers' local loaders
    per_worker = [tokens_of(rsdb.RSDBLoader(corpus, worker_id=w, num_workers=2, **kw)) for w in range(2)]
    ref = [per_worker[i % 2][i // 2] for i in range(sum(len(t) for t in per_worker))]
    assert len(got) == len(ref) > 3 and all(np.array_equal(a, b) for a, b in zip(ref, got))
    files = [p for p in (tmp_path / "cache").rglob("shard-*.arrow")]
    assert len(files) == shard_count(corpus) and not list((tmp_path / "cache").rglob("*.part"))


def _doc_token_counts(batches: list[dict]) -> dict[tuple[int, int], int]:
    counts: dict[tuple[int, int], int] = {}
    for b in batches:
        live = b["doc_ids"] >= 0
        for s, d in zip(b["source_ids"][live].tolist(), b["doc_ids"][live].tolist()):
            counts[(s, d)] = counts.get((s, d), 0) + 1
    return counts


@pytest.mark.parametrize("scheme", ["s3", "file"])
def test_block_order_keeps_a_small_cache_bounded_within_a_run(scheme, s3, tmp_path):
    """shuffle_block_shards: a stream needs only its current block, so a cache with room for a few
    of 25 shards serves a whole epoch: bit-identical to local files, each document exactly once."""
    rng = np.random.default_rng(5)
    sizes = {"web": rng.integers(20, 200, size=300).tolist(), "code": rng.integers(20, 100, size=100).tolist()}
    paths, docs = make_corpus(tmp_path / "corpus", sizes, shard_tokens=1500)
    shards = [s for p in paths.values() for s in rsdb.open_shards(p).shards]
    total, largest = sum(s["bytes"] for s in shards), max(s["bytes"] for s in shards)
    bound = 5 * largest  # a fifth of the corpus
    assert len(shards) >= 20 and bound < total // 4
    if scheme == "s3":
        uris, opts = upload(s3, paths, "blocks"), s3.options()
    else:
        uris, opts = {k: "file://" + p for k, p in paths.items()}, None
    kw = dict(seq_len=128, batch_size=2, buffer_docs=4, seed=3, epochs=1, shuffle_block_shards=1)
    ref = all_arrays(rsdb.RSDBLoader(paths, **kw))
    cache = tmp_path / "cache"
    peak, stop = [0], threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], cache_bytes(cache))
            time.sleep(0.001)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        loader = rsdb.RSDBLoader(uris, storage_options=opts, cache_dir=cache, max_cache_bytes=bound,
                                 remote=FAST, **kw)
        got = all_arrays(loader)
    finally:
        stop.set()
        sampler.join()
    assert len(got) == len(ref) > 100
    for a, b in zip(ref, got):
        assert all(np.array_equal(a[k], b[k]) for k in a)
    names = loader.source_names
    assert _doc_token_counts(got) == {(names.index(s), d): len(doc) for s, ds in docs.items()
                                      for d, doc in enumerate(ds)}
    st = loader.stats()["remote"]
    assert st["evicted_files"] > 0 and st["fetched_shards"] >= len(shards)
    assert peak[0] <= bound, (peak[0], bound)


def test_bound_too_small_for_the_loaders_own_shards_fails_at_once(tmp_path):
    """Long documents keep older shards mapped past two blocks: a fetch that only this
    loader's own mapped shards keep out is a CacheFull at once, not a wait of lock_timeout_s."""
    from rsdb.cache import CacheFull

    paths, _docs = make_corpus(tmp_path / "corpus", {"web": ([1400] + [30] * 20) * 6}, shard_tokens=1500)
    sizes = sorted((s["bytes"] for s in rsdb.open_shards(paths["web"]).shards), reverse=True)
    bound = sizes[0] + sizes[1]  # what the up-front check asks for with shuffle_block_shards=1
    kw = dict(seq_len=64, batch_size=1, buffer_docs=16, seed=3, epochs=1, shuffle_block_shards=1)
    t0 = time.monotonic()
    with pytest.raises(CacheFull, match="this loader itself maps .* raise max_cache_bytes above"):
        loader = rsdb.RSDBLoader({"web": "file://" + paths["web"]}, cache_dir=tmp_path / "c", max_cache_bytes=bound,
                                 remote={"lock_timeout_s": 30, "prefetch_shards": 2}, **kw)
        for _ in loader:
            pass
    assert time.monotonic() - t0 < 10
