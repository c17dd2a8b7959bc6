"""RSDB over object storage: tokens/s cold, warm and local; prefetch depth; start-up.

Real components only: moto's S3 server on loopback, reached through s3fs via a small
HTTP proxy (``tests/rsdb/remote_testutil.py``) that adds a fixed latency to every
request (and optionally caps each response's bandwidth), like a distant store. The
store runs in a process of its own, so it does not share the loader's GIL.

What it prints (one JSON line per figure, plus a table), every figure with the
machine's load average:

* ``local``: the corpus read from local files (the bound).
* ``cold`` at each latency and prefetch depth: an empty cache, construction to the
  last of ``--steps`` batches; time to the first batch, seconds the loader waited for
  the store (``stats()["remote"]["wait_s"]``), tokens/s over the whole run.
* ``warm``: a second loader over the now full cache (no request but the manifests).
* ``startup`` with 100 and 10,000 shards: construction time and requests made (the
  requests by then (the manifest; the prefetcher may have begun), then the first batch.
* ``bounded``, side by side on a corpus of its own read for ``--bounded-epochs``
  epochs with ``shuffle_block_shards``: local files, a cold unbounded cache, and a cold
  cache bounded at ``--bound-fraction`` of the corpus. Tokens/s, the peak of the cache
  folder's size sampled every 5 ms in both remote runs (shard files and downloads, as
  ``max_cache_bytes`` counts them) against the bound, evictions, and refetches: the
  downloads of shards the run had fetched before (the bounded cache evicted them).

Run: ``.venv/bin/python benchmarks/remote_bench.py`` (about 5 minutes on 2 cores);
``--sections bounded`` runs only the last part (about a minute).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Self

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "rsdb"))
import rsdb  # noqa: E402
from rsdb.remote import RemoteContext  # noqa: E402
from remote_testutil import BUCKET, S3, Proxy, cache_bytes  # noqa: E402


def load() -> str:
    return "load %.2f %.2f %.2f" % os.getloadavg()


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_corpus(root: Path, tokens: int, shard_tokens: int, seed: int = 0) -> str:
    """Documents with lognormal lengths (mean ~700 tokens), vocabulary 50k."""
    rng = np.random.default_rng(seed)
    docs, n = [], 0
    while n < tokens:
        k = int(min(20_000, max(16, rng.lognormal(6.2, 0.9))))
        docs.append(rng.integers(0, 50_000, size=k, dtype=np.uint32))
        n += k
    rsdb.write_shards(root, docs, source="web", shard_tokens=shard_tokens, vocab_size=50_000)
    return str(root)


def _store(conn, latencies_ms, bandwidth) -> None:
    """The store in a process of its own (moto and the proxies would share the loader's GIL)."""
    s3 = S3()
    proxies = {lat: Proxy(s3.endpoint, latency_s=lat / 1000, bandwidth=bandwidth) for lat in latencies_ms}
    conn.send({lat: s3.options(p.endpoint) for lat, p in proxies.items()})
    while True:
        cmd, *args = conn.recv()
        if cmd == "upload":
            conn.send(upload(s3, *args))
        elif cmd == "stop":
            break
    for p in proxies.values():
        p.stop()
    s3.stop()
    conn.send("stopped")


class Store:
    """moto + one latency proxy per latency, in a child process."""

    def __init__(self, latencies_ms, bandwidth=None):
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_store, args=(child, list(latencies_ms), bandwidth), daemon=True)
        self.proc.start()
        self.options = self.conn.recv()

    def upload(self, local: str, prefix: str, threads: int = 8) -> str:
        self.conn.send(("upload", local, prefix, threads))
        return self.conn.recv()

    def stop(self) -> None:
        self.conn.send(("stop",))
        self.conn.recv()
        self.proc.join(10)


def upload(s3: S3, local: str, prefix: str, threads: int = 8) -> str:
    files = [p for p in sorted(Path(local).iterdir()) if p.is_file() and not p.name.startswith(".")]
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda p: s3.put(f"{prefix}/{p.name}", p.read_bytes()), files))
    return f"s3://{BUCKET}/{prefix}"


class PeakSampler:
    """The peak of ``cache_bytes(folder)``, sampled every 5 ms in a thread while in use."""

    def __init__(self, folder: Path):
        self.folder, self.peak, self._stop = folder, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, cache_bytes(self.folder))
            self._stop.wait(0.005)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, cache_bytes(self.folder))


def run(sources, steps: int, **kw) -> dict:
    t0 = time.perf_counter()
    loader = rsdb.RSDBLoader(sources, **kw)
    t_built = time.perf_counter()
    first = None
    tokens = 0
    for _ in range(steps):
        b = next(loader)
        tokens += b["tokens"].size
        if first is None:
            first = time.perf_counter()
    t_end = time.perf_counter()
    st = loader.stats().get("remote", {})
    out = {"construct_s": round(t_built - t0, 4), "first_batch_s": round(first - t0, 4),
           "total_s": round(t_end - t0, 4), "mtokens_s": round(tokens / (t_end - t0) / 1e6, 2),
           "steady_mtokens_s": round((tokens - b["tokens"].size) / max(1e-9, t_end - first) / 1e6, 2),
           "wait_s": st.get("wait_s"), "fetched": st.get("fetched_shards"), "requests": st.get("requests"),
           "evicted": st.get("evicted_files")}
    if loader._remote is not None:
        loader._remote.close()
        if loader._remote._pool is not None:  # let prefetches in flight end before the cache folder goes
            loader._remote._pool.shutdown(wait=True)
    return out


def emit(rows: list, name: str, **fields) -> None:
    row = {"name": name, **fields, "load": load(), "peak_rss_mb": round(peak_rss_mb())}
    rows.append(row)
    print(json.dumps(row), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tokens", type=float, default=24e6, help="corpus size (uint32 tokens)")
    ap.add_argument("--shard-tokens", type=int, default=1 << 20)
    ap.add_argument("--steps", type=int, default=30, help="batches per run (seq_len 8192, batch 8)")
    ap.add_argument("--latency-ms", type=float, nargs="+", default=[20, 50])
    ap.add_argument("--prefetch", type=int, nargs="+", default=[0, 1, 4, 8])
    ap.add_argument("--bandwidth-mb", type=float, default=None, help="cap per response, MB/s (None: uncapped)")
    ap.add_argument("--startup-shards", type=int, nargs="+", default=[100, 10_000])
    ap.add_argument("--buffer-docs", type=int, default=1024)
    ap.add_argument("--sections", nargs="+", default=["cold", "startup", "bounded"],
                    choices=["cold", "startup", "bounded"], help="parts to run (default: all)")
    ap.add_argument("--bounded-tokens", type=float, default=8e6, help="corpus of the bounded part")
    ap.add_argument("--bounded-shard-tokens", type=int, default=1 << 19)
    ap.add_argument("--bound-fraction", type=float, default=0.3, help="max_cache_bytes / corpus bytes")
    ap.add_argument("--block-shards", type=int, default=2, help="shuffle_block_shards of the bounded part")
    ap.add_argument("--bounded-epochs", type=float, default=1.5, help="epochs read (endless mode, by steps)")
    ap.add_argument("--bounded-buffer-docs", type=int, default=128)
    ap.add_argument("--json", type=Path, default=None, help="also write all rows here")
    a = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="rsdb-remote-bench-"))
    bw = a.bandwidth_mb * 1e6 if a.bandwidth_mb else None
    store = Store(sorted(set(a.latency_ms) | {20.0}), bw)
    rows: list = []
    kw = dict(seq_len=8192, batch_size=8, buffer_docs=a.buffer_docs, seed=0)
    try:
        if "cold" in a.sections:
            cold_and_warm(a, store, tmp, kw, rows)
        if "startup" in a.sections:
            startup(a, store, tmp, kw, rows)
        if "bounded" in a.sections:
            bounded(a, store, tmp, kw, rows)
    finally:
        store.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    if a.json:
        a.json.write_text(json.dumps(rows, indent=1))


def cold_and_warm(a, store: Store, tmp: Path, kw: dict, rows: list) -> None:
    local = write_corpus(tmp / "web", int(a.tokens), a.shard_tokens)
    n_shards = len(rsdb.open_shards(local).shards)
    uri = store.upload(local, "bench/web")
    print(f"# corpus: {int(a.tokens)/1e6:.0f}M tokens in {n_shards} shards; {load()}", flush=True)
    run({"web": local}, 3, **kw)  # warm the page cache and imports
    emit(rows, "local", **run({"web": local}, a.steps, **kw))
    for lat in a.latency_ms:
        opts = store.options[lat]
        # s3fs's client set-up (about a second, once per process and endpoint) is not the store's latency
        RemoteContext({"cache_dir": str(tmp / "warmup")}, opts).open_shards(uri)
        for depth in a.prefetch:
            cache = tmp / f"cache-{lat:g}-{depth}"
            r = run({"web": uri}, a.steps, storage_options=opts, cache_dir=cache,
                    remote={"prefetch_shards": depth}, **kw)
            emit(rows, "cold", latency_ms=lat, prefetch_shards=depth, shards=n_shards, **r)
        r = run({"web": uri}, a.steps, storage_options=opts, cache_dir=cache, remote={"prefetch_shards": 4}, **kw)
        emit(rows, "warm", latency_ms=lat, **r)
        for depth in a.prefetch:
            shutil.rmtree(tmp / f"cache-{lat:g}-{depth}", ignore_errors=True)


def startup(a, store: Store, tmp: Path, kw: dict, rows: list) -> None:
    for n in (n for n in a.startup_shards if n > 0):  # --startup-shards 0 skips this part
        # small shards (ten 200-token documents, ~8 KB each): the cost is per shard, not per byte
        d = tmp / f"many-{n}"
        docs = np.random.default_rng(n).integers(0, 50_000, size=(n * 10, 200), dtype=np.uint32)
        rsdb.write_shards(d, list(docs), source="web", shard_tokens=2000, vocab_size=50_000)
        t0 = time.perf_counter()
        u = store.upload(str(d), f"many-{n}/web", 16)
        up = time.perf_counter() - t0
        for bd in (64, a.buffer_docs):
            t0 = time.perf_counter()
            loader = rsdb.RSDBLoader({"web": u}, storage_options=store.options[20.0],
                                     cache_dir=tmp / f"cache-many-{n}-{bd}", remote={"prefetch_shards": 8},
                                     **dict(kw, seq_len=2048, batch_size=1, buffer_docs=bd))
            built = time.perf_counter() - t0
            at_construct = loader.stats()["remote"]["requests"]
            next(loader)
            first = time.perf_counter() - t0
            st = loader.stats()["remote"]
            loader._remote.close()
            emit(rows, "startup", shards=n, buffer_docs=bd, latency_ms=20, construct_s=round(built, 4),
                 requests_at_construct=at_construct, first_batch_s=round(first, 3),
                 shards_local_at_first_batch=st["local_shards"], demand_fetches=st["demand_fetches"],
                 wait_s=st["wait_s"], upload_s=round(up, 1))
        shutil.rmtree(d, ignore_errors=True)


def bounded(a, store: Store, tmp: Path, kw: dict, rows: list) -> None:
    """Local, unbounded and bounded cache side by side, all with ``shuffle_block_shards``."""
    local = write_corpus(tmp / "bounded-web", int(a.bounded_tokens), a.bounded_shard_tokens, seed=1)
    shards = rsdb.open_shards(local).shards
    corpus_bytes = sum(s["bytes"] for s in shards)
    bound = int(corpus_bytes * a.bound_fraction)
    uri = store.upload(local, "bounded/web")
    opts = store.options[20.0]
    bkw = dict(kw, buffer_docs=a.bounded_buffer_docs, shuffle_block_shards=a.block_shards)
    steps = int(a.bounded_epochs * int(a.bounded_tokens) / (bkw["seq_len"] + 1) / bkw["batch_size"])
    print(f"# bounded: {corpus_bytes / 1e6:.1f} MB in {len(shards)} shards, bound {bound / 1e6:.1f} MB, "
          f"shuffle_block_shards={a.block_shards}, {steps} batches (~{a.bounded_epochs:g} epochs); {load()}",
          flush=True)
    RemoteContext({"cache_dir": str(tmp / "warmup")}, opts).open_shards(uri)  # s3fs's one-off client set-up
    run({"web": local}, 3, **bkw)
    common = dict(shards=len(shards), corpus_bytes=corpus_bytes, block_shards=a.block_shards, steps=steps)
    emit(rows, "bounded", run="local", **common, **run({"web": local}, steps, **bkw))
    for name, limit in (("unbounded", None), ("bounded", bound)):
        cache = tmp / f"cache-bounded-{name}"
        with PeakSampler(cache) as sampler:
            r = run({"web": uri}, steps, storage_options=opts, cache_dir=cache, max_cache_bytes=limit,
                    remote={"prefetch_shards": 4}, **bkw)
        # every shard is read in the first epoch: fetches past the shard count are refetches
        emit(rows, "bounded", run=name, latency_ms=20, prefetch_shards=4, max_cache_bytes=limit,
             peak_cache_bytes=sampler.peak, peak_over_bound=None if limit is None else sampler.peak - limit,
             refetched=r["fetched"] - len(shards), **common, **r)
        shutil.rmtree(cache, ignore_errors=True)


if __name__ == "__main__":
    main()
