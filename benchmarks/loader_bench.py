"""Loader benchmark: RSDB vs the memcpy bound, a numpy reference, and peer loaders.

One synthetic corpus (``loader_corpus.py``: 3 sources, heavy-tailed document
lengths, 100k+ token documents, 200M tokens by default), seq_len 8192, one core.
Every loader runs in a fresh subprocess pinned to one CPU, so startup time and peak
memory are its own, and all are measured in this one run, side by side:

  memcpy        the bound: the same token bytes copied from the memory-mapped shards
                into a preallocated (batch, seq_len + 1) int32 batch in file order, rows
                of seq_len + 1 tokens, with ``numpy.copyto`` (same dtype size, contiguous:
                a plain memcpy, one call per batch); it pays the same first-touch page
                faults of the mapping as every loader does in a fresh process
  memcpy_warm   the same copy again over the same mappings after one untimed pass
                (page tables populated): the pure copy speed, for reference
  rsdb          rsdb.RSDBLoader(packing="rsdb")
  rsdb_into     the default loader through next_into() with one caller-owned set of
                arrays reused every batch (next() hands out fresh arrays each batch:
                the difference is the cost of those allocations)
  rsdb_tokens   the same with fields=("tokens",): only the token array, i.e. the same
                bytes the bound writes (the default also writes loss_mask,
                position_ids, doc_ids, source_ids and a small cu_seqlens: 15 bytes per
                token in all)
  rsdb_populate the default loader with populate="shard" (each stream's slice of a shard
                mapped in one madvise call when the shard is first used, at start-up)
  rsdb_nopop    the default loader with populate="off" (page faults only), to show what
                the default populate="pool" (2 MiB cached windows mapped as documents
                enter the pool) gains
  rsdb_noverify the default loader with verify="off": the default ("checksum") checks
                each shard's xxh64 in a background thread before its documents enter
                the pool; this line shows what that costs
  sequential    rsdb.RSDBLoader(packing="sequential"), the naive packer
  numpy_ref     loader_numpy_ref.NumpyRSDB, same algorithm and chunk rule in numpy
  litdata       litdata StreamingDataset + TokensLoader(block_size=seq_len + 1),
                shuffle=True, StreamingDataLoader(num_workers=0), after litdata.optimize
  mosaic        mosaicml-streaming StreamingDataset (shuffle=True) over MDS samples of
                seq_len + 1 concatenated tokens, torch DataLoader(num_workers=0)
  torch2_floor  the same DataLoader(num_workers=2) over a dataset that yields ready-made
                batches of the RSDB shapes without loading anything, as six fresh tensors
                per batch (the usual way): the ceiling that DataLoader's inter-process
                transfer puts on a worker-based loader that yields tensors one by one
  rsdb_megatron rsdb.RSDBLoader(packing="rsdb") over the same documents as Megatron
                .bin/.idx (int32), to show the format costs nothing
  rsdb_torch2   rsdb.torch.RSDBIterableDataset through torch DataLoader(num_workers=2)
                (not pinned: two workers on two cores), against the same bound; its
                workers fill each batch into one shared-memory block (one transfer per
                batch instead of six)

Loaders run in ``--repeat`` interleaved rounds (default 3); each one's median run is
reported. Throughput is measured twice: per wall-clock second, and per CPU-second of the
loader's process (all its threads), both from the end of the first batch; start-up
(construction + first batch) is reported separately, and "% memcpy incl. start-up"
compares whole runs, start-up included, by wall time. Ratios use the CPU-time figure, because on a shared
machine wall time measures the neighbours as much as the loader; the exception is
``rsdb_torch2``, whose work runs in its worker processes and is judged by wall time
against the wall-time bound. A token here is one delivered token slot: a batch counts batch_size * (seq_len + 1).
Each measurement prints one JSON line; a table follows; ``--json-out`` saves all.

Run:  .venv/bin/python benchmarks/loader_bench.py                 (200M tokens)
      .venv/bin/python benchmarks/loader_bench.py --tokens 5000000  (smoke run)
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import re
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import loader_corpus as corpus  # noqa: E402

ALL = ["memcpy", "memcpy_warm", "rsdb", "rsdb_into", "rsdb_tokens", "rsdb_populate", "rsdb_nopop", "rsdb_noverify", "sequential", "numpy_ref", "litdata", "mosaic", "rsdb_torch2",
       "torch2_floor", "rsdb_megatron"]
PEERS = ["litdata", "mosaic"]
MULTI_PROCESS = ("rsdb_torch2", "torch2_floor")  # judged by wall time, on all cores


# ---------------------------------------------------------------------------- workers
# Each function builds its loader and returns an iterator of batches; the harness
# times construction + first batch (startup) and the rest (throughput).


def _views(cfg) -> dict[str, list]:
    """Shard views of every source: what the memcpy bound and the numpy reference read."""
    import rsdb
    from rsdb.megatron import open_megatron

    out = {}
    for name, path in cfg["paths"].items():
        if cfg["format"] == "megatron":
            out[name] = [open_megatron(path, verify="off")]  # the bound copies bytes; it checks nothing
        else:
            out[name] = rsdb.open_shards(path, verify="off").views()
    return out


def make_memcpy(cfg, views=None):
    views = views if views is not None else _views(cfg)
    B, row = cfg["batch_size"], cfg["seq_len"] + 1
    batch = np.zeros((B, row), np.int32)

    def gen():
        r = 0
        for vs in views.values():
            for v in vs:
                t = v.tokens
                assert t.dtype.itemsize == 4, "the bound assumes 32-bit tokens, as the corpus has"
                m = int(v.offsets[-1]) // row
                rows = t[: m * row].view(np.int32).reshape(m, row)  # no copy: the mapped file
                i = 0
                while i < m:
                    take = min(B - r, m - i)
                    np.copyto(batch[r : r + take], rows[i : i + take])  # same dtype: a plain memcpy
                    r += take
                    i += take
                    if r == B:
                        r = 0
                        yield batch

    return gen()


def make_memcpy_warm(cfg):
    """The bound again, after one untimed pass over the same mappings (pages already mapped)."""
    views = _views(cfg)
    for _ in make_memcpy(cfg, views):
        pass
    return make_memcpy(cfg, views)


def _loader_args(cfg) -> dict:
    """The corpus and batch shape every RSDB line of the benchmark shares: one epoch."""
    return dict(sources=dict(cfg["paths"]), seq_len=cfg["seq_len"], batch_size=cfg["batch_size"],
                buffer_docs=cfg["buffer_docs"], seed=cfg["seed"], epochs=1)


def make_rsdb(cfg, packing="rsdb", **extra):
    import rsdb

    loader = rsdb.RSDBLoader(**_loader_args(cfg), packing=packing, **extra)
    return iter(loader)


def make_rsdb_into(cfg):
    """The default loader filling one caller-owned set of arrays, reused every batch."""
    import rsdb

    loader = rsdb.RSDBLoader(**_loader_args(cfg))
    bufs = {k: np.empty(shape, dtype) for k, (shape, dtype) in loader.buffer_layout().items()}

    def gen():
        while True:
            try:
                yield loader.next_into(bufs)
            except StopIteration:
                return
    return gen()


def make_rsdb_populate(cfg):
    return make_rsdb(cfg, populate="shard")


def make_rsdb_nopop(cfg):
    return make_rsdb(cfg, populate="off")


def make_rsdb_noverify(cfg):
    return make_rsdb(cfg, verify="off")


def make_rsdb_tokens(cfg):
    return make_rsdb(cfg, fields=("tokens",))


def make_rsdb_megatron(cfg):
    return make_rsdb({**cfg, "paths": cfg["megatron_paths"]})


def make_sequential(cfg):
    return make_rsdb(cfg, packing="sequential")


def make_numpy_ref(cfg):
    from loader_numpy_ref import NumpyRSDB

    return iter(NumpyRSDB(_views(cfg), seq_len=cfg["seq_len"], batch_size=cfg["batch_size"],
                          buffer_docs=cfg["buffer_docs"], seed=cfg["seed"]))


def make_litdata(cfg):
    from litdata import StreamingDataLoader, StreamingDataset
    from litdata.streaming.item_loader import TokensLoader

    ds = StreamingDataset(input_dir=cfg["litdata_path"], item_loader=TokensLoader(block_size=cfg["seq_len"] + 1),
                          shuffle=True, drop_last=True, seed=cfg["seed"])
    return iter(StreamingDataLoader(ds, batch_size=cfg["batch_size"], num_workers=0, drop_last=True))


def make_mosaic(cfg):
    import torch

    base = corpus.import_streaming()

    class TokenBlocks(base.StreamingDataset):
        # what llm-foundry's text dataset does with pre-concatenated token samples
        def __getitem__(self, idx):
            sample = super().__getitem__(idx)
            return torch.from_numpy(np.frombuffer(sample["tokens"], dtype=np.int32).copy())

    base.util.clean_stale_shared_memory()
    ds = TokenBlocks(local=cfg["mds_path"], remote=None, shuffle=True, shuffle_seed=cfg["seed"],
                     batch_size=cfg["batch_size"])
    return iter(torch.utils.data.DataLoader(ds, batch_size=cfg["batch_size"], num_workers=0, drop_last=True))


def make_rsdb_torch2(cfg):
    import torch
    from rsdb.torch import RSDBIterableDataset

    ds = RSDBIterableDataset(**_loader_args(cfg))
    return iter(torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2))


PRE_IMPORT = {
    "memcpy": ["rsdb"], "memcpy_warm": ["rsdb"], "rsdb": ["rsdb"], "sequential": ["rsdb"], "numpy_ref": ["rsdb", "loader_numpy_ref"],
    "litdata": ["litdata"], "mosaic": ["streaming"], "rsdb_torch2": ["rsdb", "rsdb.torch"], "torch2_floor": [],
    "rsdb_megatron": ["rsdb"], "rsdb_tokens": ["rsdb"], "rsdb_populate": ["rsdb"], "rsdb_nopop": ["rsdb"],
    "rsdb_noverify": ["rsdb"], "rsdb_into": ["rsdb"],
}

class _ReadyBatches:
    """An IterableDataset that yields ready-made RSDB-shaped batches: no loading at all."""

    def __init__(self, cfg):
        self.cfg = cfg

    def __iter__(self):
        import torch
        from torch.utils.data import get_worker_info

        B, L1 = self.cfg["batch_size"], self.cfg["seq_len"] + 1
        info = get_worker_info()
        nw, wid = (info.num_workers, info.id) if info else (1, 0)
        n = self.cfg["epoch_batches"] // nw + (wid < self.cfg["epoch_batches"] % nw)
        # the RSDB batch format; cu_seqlens as wide as a typical batch's widest row here
        batch = {"tokens": torch.zeros(B, L1, dtype=torch.int32), "loss_mask": torch.zeros(B, L1, dtype=torch.bool),
                 "position_ids": torch.zeros(B, L1, dtype=torch.int32), "doc_ids": torch.zeros(B, L1, dtype=torch.int32),
                 "source_ids": torch.zeros(B, L1, dtype=torch.int16),
                 "cu_seqlens": torch.zeros(B, 16, dtype=torch.int32)}
        for _ in range(n):
            # fresh storage per batch, as a real loader produces (a tensor sent twice
            # would already sit in shared memory and travel for free)
            yield {k: v.clone() for k, v in batch.items()}


def make_torch2_floor(cfg):
    import torch

    class DS(_ReadyBatches, torch.utils.data.IterableDataset):
        pass

    return iter(torch.utils.data.DataLoader(DS(cfg), batch_size=None, num_workers=2))


MAKERS = {
    "memcpy": make_memcpy,
    "memcpy_warm": make_memcpy_warm,
    "rsdb": make_rsdb,
    "sequential": make_sequential,
    "numpy_ref": make_numpy_ref,
    "litdata": make_litdata,
    "mosaic": make_mosaic,
    "rsdb_torch2": make_rsdb_torch2,
    "rsdb_megatron": make_rsdb_megatron,
    "rsdb_tokens": make_rsdb_tokens,
    "rsdb_into": make_rsdb_into,
    "rsdb_populate": make_rsdb_populate,
    "rsdb_nopop": make_rsdb_nopop,
    "rsdb_noverify": make_rsdb_noverify,
    "torch2_floor": make_torch2_floor,
}


def _ntok(batch) -> int:
    t = batch["tokens"] if isinstance(batch, dict) else batch
    return int(np.prod(tuple(t.shape)))


def _status_kb(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def run_worker(name: str, cfg: dict) -> dict:
    """Measure one loader in this (fresh) process; returns its measurement dict."""
    if name not in MULTI_PROCESS:
        os.sched_setaffinity(0, {cfg["cpu"]})
    # Every worker is a training process: torch and the loader's library are imported
    # before the clock starts and before the memory baseline is taken.
    import torch

    torch.set_num_threads(1)
    for mod in PRE_IMPORT.get(name, ()):
        corpus.import_streaming() if mod == "streaming" else __import__(mod)
        if mod == "rsdb":  # rsdb loads its modules on first use: import them before the clock
            __import__("rsdb.loader")
            __import__("rsdb.megatron")
    gc.collect()
    base_rss = _status_kb("VmRSS")
    base_anon = _status_kb("RssAnon")
    t0 = time.perf_counter()
    it = MAKERS[name](cfg)
    first = next(it)
    t1 = time.perf_counter()
    c1 = time.process_time()
    tokens, batches = 0, 0
    peak_anon = _status_kb("RssAnon")
    perf = None
    if cfg.get("perf_out"):  # sample only the steady state, not imports or startup
        perf = subprocess.Popen(["perf", "record", "-F", "1999", "-g", "-o", cfg["perf_out"], "-p", str(os.getpid())],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)
        t1 = time.perf_counter()
        c1 = time.process_time()
    deadline = t1 + cfg["max_seconds"]
    next_sample = t1 + 0.1
    done = True
    t = t1
    for batch in it:
        tokens += _ntok(batch)
        batches += 1
        t = time.perf_counter()
        if t >= next_sample:
            peak_anon = max(peak_anon, _status_kb("RssAnon"))
            next_sample = t + 0.1
            if t >= deadline:
                done = False
                break
    t = time.perf_counter()
    if perf is not None:
        perf.send_signal(signal.SIGINT)
        perf.wait()
    peak_anon = max(peak_anon, _status_kb("RssAnon"))
    secs = t - t1
    cpu_secs = time.process_time() - c1
    first_tokens = _ntok(first)
    del first, it
    return {
        "name": name,
        "tokens": tokens,
        "seconds": round(secs, 4),
        "tokens_s": tokens / secs if secs > 0 else 0.0,
        "cpu_seconds": round(cpu_secs, 4),
        # per CPU-second of this process (all its threads): robust to neighbours on a
        # shared machine; not meaningful for rsdb_torch2, whose work is in its workers
        "tokens_cpu_s": tokens / cpu_secs if cpu_secs > 0 else 0.0,
        "bytes_s": 4 * tokens / secs if secs > 0 else 0.0,
        "startup_s": round(t1 - t0, 4),
        # wall throughput of the whole run, start-up and first batch included: work a
        # loader moves into its first batch (e.g. populating page tables) counts here
        "tokens_s_incl_startup": (tokens + first_tokens) / (t - t0) if t > t0 else 0.0,
        "first_batch_tokens": first_tokens,
        "batches": batches + 1,
        "epoch_done": done,
        # VmHWM, not ru_maxrss: Linux carries ru_maxrss across exec from the parent.
        "peak_rss_mb": round(_status_kb("VmHWM") / 1024, 1),
        "children_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
        "peak_anon_mb": round(peak_anon / 1024, 1),
        "anon_growth_mb": round((peak_anon - base_anon) / 1024, 1),
        "baseline_rss_mb": round(base_rss / 1024, 1),
        # file-backed resident pages at the end: memory-mapped shard pages still mapped
        # (reclaimable page cache, but counted in RSS)
        "rss_file_mb_end": round(_status_kb("RssFile") / 1024, 1),
    }


# ---------------------------------------------------------------------------- harness


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=HERE, check=True).stdout.strip()
    except Exception:  # noqa: BLE001 - benchmark metadata only
        return "unknown"


def _emit(rec: dict, sink: list) -> None:
    sink.append(rec)
    print(json.dumps(rec), flush=True)


def _warm_page_cache(paths: list[Path]) -> None:
    """Read every file once, so no loader pays for the first disk read."""
    for root in paths:
        for f in sorted(Path(root).rglob("*")) if Path(root).is_dir() else [Path(root)]:
            if f.is_file():
                with open(f, "rb") as fh:
                    while fh.read(1 << 24):
                        pass


def _available(name: str) -> str | None:
    """Why a loader cannot run here, or None."""
    import importlib.util

    need = {"rsdb": ("rsdb", "RSDBLoader"), "sequential": ("rsdb", "RSDBLoader"),
            "rsdb_megatron": ("rsdb", "RSDBLoader"), "rsdb_tokens": ("rsdb", "RSDBLoader"),
            "rsdb_populate": ("rsdb", "RSDBLoader"), "rsdb_nopop": ("rsdb", "RSDBLoader"),
            "rsdb_noverify": ("rsdb", "RSDBLoader"), "rsdb_into": ("rsdb", "RSDBLoader"),
            "rsdb_torch2": ("rsdb.torch", "RSDBIterableDataset"),
            "litdata": ("litdata", None), "mosaic": ("streaming", None)}.get(name)
    if need is None:
        return None
    mod, attr = need
    try:
        if importlib.util.find_spec(mod.split(".")[0]) is None:
            return f"{mod} not installed (pip install 'trinity-data[bench]')"
        if attr:
            m = __import__(mod, fromlist=[attr])
            if not hasattr(m, attr):
                return f"{mod}.{attr} not available in this build"
    except ImportError as e:
        return f"{mod}: {e}"
    return None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, default=200_000_000, help="corpus size in tokens (default 200M)")
    ap.add_argument("--seq-len", type=int, default=8192)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--buffer-docs", type=int, default=1024)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--format", choices=["rsdb", "megatron"], default="rsdb",
                    help="storage RSDB, memcpy and the numpy reference read (default: RSDB token shards)")
    ap.add_argument("--only", default=",".join(ALL), help=f"comma list out of {','.join(ALL)}")
    ap.add_argument("--max-seconds", type=float, default=60.0,
                    help="stop a loader after this many seconds of steady-state reading (default 60)")
    ap.add_argument("--repeat", type=int, default=3,
                    help="rounds over all loaders; each loader's median run is reported (default 3)")
    ap.add_argument("--cpu", type=int, default=None, help="CPU to pin single-core runs to (default: last allowed)")
    ap.add_argument("--out", type=Path, default=None, help="cache folder (default out/bench)")
    ap.add_argument("--json-out", type=Path, default=None, help="also write all measurements to this JSON file")
    ap.add_argument("--profile", default=None, metavar="LOADER",
                    help="also run LOADER once under `perf record` and print where its time goes")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--worker-cfg", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.worker:
        rec = run_worker(args.worker, json.loads(args.worker_cfg))
        print("RESULT " + json.dumps(rec), flush=True)
        return 0

    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = set(names) - set(ALL)
    if unknown:
        ap.error(f"--only: unknown loader(s) {sorted(unknown)}; choose from {ALL}")
    if "memcpy" not in names:
        names.insert(0, "memcpy")  # every ratio needs the bound
    root = args.out or corpus.default_root()
    spec = corpus.CorpusSpec(tokens=args.tokens, seed=args.seed)
    L1 = args.seq_len + 1
    cpu = args.cpu if args.cpu is not None else max(os.sched_getaffinity(0))
    records: list[dict] = []
    meta = {"commit": _commit(), "device": "cpu", "machine": platform.machine(), "cpus": os.cpu_count(),
            "python": platform.python_version(), "corpus_tokens": args.tokens, "seq_len": args.seq_len,
            "batch_size": args.batch_size, "buffer_docs": args.buffer_docs, "format": args.format}

    skipped = {n: why for n in names if (why := _available(n))}
    if args.format == "rsdb" and not hasattr(__import__("rsdb"), "write_shards"):
        ap.error("this rsdb build has no write_shards yet; use --format megatron")

    build = corpus.build_rsdb if args.format == "rsdb" else corpus.build_megatron
    info = build(spec, root)
    _emit({"name": "corpus_build", "format": args.format, "seconds": round(info["build_s"], 2),
           "sources": info["sources"], **meta}, records)
    epoch_tokens = sum(v["num_tokens"] for v in info["sources"].values())
    cfg = {"epoch_batches": -(-epoch_tokens // (args.batch_size * (args.seq_len + 1))),
           "paths": info["paths"], "format": args.format, "seq_len": args.seq_len, "batch_size": args.batch_size,
           "buffer_docs": args.buffer_docs, "seed": args.seed, "max_seconds": args.max_seconds, "cpu": cpu}
    warm = [root / spec.key / args.format]
    if "rsdb_megatron" in names and "rsdb_megatron" not in skipped:
        if args.format == "megatron":
            cfg["megatron_paths"] = info["paths"]
        else:
            mg = corpus.build_megatron(spec, root)
            cfg["megatron_paths"] = mg["paths"]
            warm.append(root / spec.key / "megatron")
            _emit({"name": "megatron_convert", "seconds": round(mg["build_s"], 2), **meta}, records)
    if "litdata" in names and "litdata" not in skipped:
        li = corpus.build_litdata(spec, root, L1)
        cfg["litdata_path"] = li["path"]
        warm.append(Path(li["path"]))
        _emit({"name": "litdata_optimize", "seconds": round(li["build_s"], 2), **meta}, records)
    if "mosaic" in names and "mosaic" not in skipped:
        mi = corpus.build_mds(spec, root, L1)
        cfg["mds_path"] = mi["path"]
        warm.append(Path(mi["path"]))
        _emit({"name": "mds_convert", "seconds": round(mi["build_s"], 2), **meta}, records)
    _warm_page_cache(warm)

    runs: dict[str, list[dict]] = {n: [] for n in names}
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
               TOKENIZERS_PARALLELISM="false")
    for rnd in range(args.repeat):  # rounds interleave loaders, so machine noise hits all alike
        for name in names:
            if name in skipped:
                if rnd == 0:
                    _emit({"name": name, "skipped": skipped[name], **meta}, records)
                continue
            proc = subprocess.run([sys.executable, __file__, "--worker", name, "--worker-cfg", json.dumps(cfg)],
                                  capture_output=True, text=True, env=env)
            line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
            if proc.returncode != 0 or line is None:
                tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
                _emit({"name": name, "round": rnd, "error": " | ".join(tail), **meta}, records)
                continue
            rec = json.loads(line[len("RESULT "):])
            rec["round"] = rnd
            runs[name].append(rec)
            print(json.dumps({"name": name, "round": rnd, "tokens_s": round(rec["tokens_s"]),
                              "tokens_cpu_s": round(rec["tokens_cpu_s"])}), file=sys.stderr, flush=True)
    results: dict[str, dict] = {}
    for name, rs in runs.items():
        if rs:  # the median run by throughput stands for the loader; all throughputs are kept
            key = _key(name)
            rs = sorted(rs, key=lambda r: r[key])
            results[name] = {**rs[len(rs) // 2], "tokens_s_runs": [round(r["tokens_s"]) for r in rs],
                             "tokens_cpu_s_runs": [round(r["tokens_cpu_s"]) for r in rs], "rounds": len(rs)}
    for name, rec in results.items():
        for metric, sfx in (("tokens_s", "_wall"), ("tokens_cpu_s", "_cpu")):
            def of(n, metric=metric):
                return results.get(n, {}).get(metric)

            tps = rec[metric]
            bound, warm, ref = of("memcpy"), of("memcpy_warm"), of("numpy_ref")
            peer = max((of(p) for p in PEERS if p in results), default=None)
            if name in MULTI_PROCESS and metric == "tokens_cpu_s":
                bound = warm = ref = peer = None  # its work runs in the worker processes
            rec["frac_of_memcpy" + sfx] = round(tps / bound, 4) if bound else None
            rec["frac_of_memcpy_warm" + sfx] = round(tps / warm, 4) if warm else None
            rec["x_numpy_ref" + sfx] = round(tps / ref, 2) if ref else None
            rec["x_best_peer" + sfx] = round(tps / peer, 2) if peer else None
        bound_all = results.get("memcpy", {}).get("tokens_s_incl_startup")
        rec["frac_of_memcpy_incl_startup_wall"] = (round(rec["tokens_s_incl_startup"] / bound_all, 4)
                                                   if bound_all else None)
        rec["pinned_cpus"] = len(os.sched_getaffinity(0)) if name in MULTI_PROCESS else 1
        _emit({**rec, **meta}, records)

    _table(results)
    if args.profile:
        _profile(args.profile, cfg, root)
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps(records, indent=1))
    return 0


def _profile(name: str, cfg: dict, root: Path) -> None:
    """Run one loader's worker under perf (cpu-clock samples, call graphs) and print the top symbols."""
    import shutil

    if shutil.which("perf") is None:
        print(f"--profile: perf is not installed; cannot profile {name}", file=sys.stderr)
        return
    data = root / f"perf-{name}.data"
    subprocess.run([sys.executable, __file__, "--worker", name, "--worker-cfg",
                    json.dumps({**cfg, "perf_out": str(data)})], capture_output=True, text=True)
    rep = subprocess.run(["perf", "report", "-i", str(data), "--stdio", "--no-children", "--percent-limit", "1",
                          "--sort", "dso,symbol", "-g", "none"], capture_output=True, text=True)
    lines = [re.sub(r"\s+", " ", ln).strip() for ln in rep.stdout.splitlines() if ln.strip() and not ln.startswith("#")]
    print(f"\nperf profile of {name}, steady state (self time, symbols >= 1%; data in {data}):")
    print("\n".join(re.sub(r"( -)+$", "", ln) for ln in lines[:40]))
    if any("_core" in ln and "0x0000" in ln for ln in lines):
        print("(the compiled core is stripped, so its functions show as addresses; rebuild it with its symbols "
              "to name them: .venv/bin/pip install --no-build-isolation -e . --no-deps "
              "-C cmake.define.RSDB_NOSTRIP=ON -C install.strip=false)")


def _key(name: str) -> str:
    """The throughput a loader is judged by: CPU-time based, except for the multi-process one."""
    return "tokens_s" if name in MULTI_PROCESS else "tokens_cpu_s"


def _table(results: dict[str, dict]) -> None:
    cols = ["loader", "Mtok/s wall", "Mtok/CPU-s", "% memcpy", "% warm memcpy", "x numpy ref", "x best peer",
            "% memcpy incl. start-up (wall)", "startup s", "peak RSS MB", "+anon MB", "epoch"]
    rows = []

    def pct(x):
        return f"{100 * x:.1f}" if x is not None else "-"

    def times(x):
        return f"{x:.2f}" if x is not None else "-"

    for name, r in results.items():
        sfx = "_wall" if _key(name) == "tokens_s" else "_cpu"
        rows.append([
            name + (" (wall)" if sfx == "_wall" else ""), f"{r['tokens_s'] / 1e6:.1f}",
            f"{r['tokens_cpu_s'] / 1e6:.1f}" if sfx == "_cpu" else "-",
            pct(r["frac_of_memcpy" + sfx]), pct(r["frac_of_memcpy_warm" + sfx]),
            times(r["x_numpy_ref" + sfx]), times(r["x_best_peer" + sfx]),
            pct(r.get("frac_of_memcpy_incl_startup_wall")), f"{r['startup_s']:.3f}", f"{r['peak_rss_mb']:.0f}", f"{r['anon_growth_mb']:.0f}",
            "full" if r["epoch_done"] else "capped",
        ])
    widths = [max(len(c), *(len(row[i]) for row in rows)) if rows else len(c) for i, c in enumerate(cols)]
    print()
    print("| " + " | ".join(c.ljust(w) for c, w in zip(cols, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print("| " + " | ".join(v.ljust(w) for v, w in zip(row, widths)) + " |")


if __name__ == "__main__":
    sys.exit(main())
