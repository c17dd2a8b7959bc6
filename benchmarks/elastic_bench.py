"""Elastic resume at cluster scale: global state size, gather and restore time, throughput after a reshard.

Two parts, both printed as JSON lines with the load average next to every figure:

* ``synthetic``: per-stream states of ``ranks x 4 workers`` streams with 4,096-document
  pools over a 3-source corpus layout (1,000 shards, 1B documents; no data needed,
  the states are built the way the core writes them), at 1/8 and full size (256 and
  2,048 ranks) in fresh processes: gather time, global state bytes (JSON, as written),
  decode and deal time of one new stream restoring on 1,536 ranks x 4 workers, peak RSS.
* ``real``: a real corpus (``benchmarks/loader_corpus.py``, cached under out/bench): the
  original configuration's startup, memory and state size (one rank, 4 workers, 4,096
  documents per pool), then a reshard 1 rank x 4 workers -> 1 rank x 3 workers with a
  larger batch, and tokens/s of a restored stream against a fresh loader of the same
  stream, in interleaved rounds of the same run.

    .venv/bin/python benchmarks/elastic_bench.py                 # both parts
    .venv/bin/python benchmarks/elastic_bench.py --part synthetic --ranks 256 2048
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SOURCES = (("web", 600, 0.6), ("code", 250, 0.25), ("math", 150, 0.15))  # name, shards, pool share
DOCS_PER_SHARD = 1_000_000


def load() -> float:
    return round(os.getloadavg()[0], 2)


def emit(**kw) -> None:
    print(json.dumps({**kw, "load_avg_1m": load()}), flush=True)


# ---- synthetic per-stream states ---------------------------------------------------------
def _config(ranks: int, workers: int, pool: int) -> dict:
    units = [n for _, n, _ in SOURCES]
    return {"seq_len": 8192, "batch_size": 8, "buffer_docs": pool, "max_chunk": None, "refill_batch": pool // 16,
            "seed": 0, "world_size": ranks, "num_workers": workers, "epochs": None, "packing": "rsdb",
            "sources": [s for s, _, _ in SOURCES], "units": units, "docs": [DOCS_PER_SHARD] * sum(units),
            "corpus": "synthetic0000000", "phases": [[10**13, {"web": 1.0}], [4 * 10**12, {"web": 1.0}],
                                                      [3 * 10**12, {"web": 1.0}]], "schedule": None}


def synthetic_states(ranks: int, workers: int, pool: int, steps: int, seed: int = 0):
    """Yield every stream's state after ``steps`` global steps (numpy arrays inside, as a core would fill)."""
    from rsdb import _core

    S = ranks * workers
    base = _config(ranks, workers, pool)
    rng = np.random.default_rng(seed)
    first_unit = np.cumsum([0] + [n for _, n, _ in SOURCES])
    n = DOCS_PER_SHARD
    for r in range(ranks):
        for w in range(workers):
            k = r * workers + w
            cfg = dict(base, rank=r, worker_id=w)
            n_local, cursor = [], []
            for s, (_, units, _) in enumerate(SOURCES):
                q = (k + np.arange(units)) % S
                sizes = (q + 1) * n // S - q * n // S
                n_local.append(int(sizes.sum()))
                cursor.append(int(rng.integers(pool, n_local[-1])))
            src = rng.choice(3, size=pool, p=[p for _, _, p in SOURCES])
            j = (rng.random(pool) * np.array([u for _, u, _ in SOURCES])[src]).astype(np.int64)  # shard in source
            q = (k + j) % S
            lo, hi = q * n // S, (q + 1) * n // S
            doc = lo + (rng.random(pool) * (hi - lo)).astype(np.int64)
            core = {"version": _core.core_version(), "rng": int(rng.integers(2**63)), "phase": 0, "batches": steps,
                    "refilling": False, "slot_index": np.arange(pool), "slot_source": src,
                    "slot_view": first_unit[src] + j, "slot_doc": doc, "slot_head": rng.integers(0, 1500, pool),
                    "epoch": [0, 0, 0], "cursor": cursor, "exhausted": [0, 0, 0], "epoch_tokens": [0, 0, 0],
                    "emitted": rng.integers(0, 10**9, 9).tolist(), "partial_count": [0, 0, 0], "partial_view": [],
                    "partial_doc": [], "partial_head": [], "carry_count": [0, 0, 0], "carry_streams": [],
                    "carry_stream": [], "carry_epoch": [], "carry_begin": [], "carry_end": [], "own_n_local": n_local}
            yield {"format": "rsdb-loader-state", "version": _core.core_version(),
                   "batches": -(-(steps - w) // workers), "tokens0": 0, "step0": 0, "config": cfg, "core": core}


def _cpu_and_wall(fn):
    c0, w0 = time.process_time(), time.perf_counter()
    out = fn()
    return out, time.process_time() - c0, time.perf_counter() - w0


def run_synthetic(ranks: int, workers: int, pool: int, new_ranks: int) -> None:
    import rsdb
    from rsdb.state import Decoded, core_state, verify_global

    steps = 1000 * workers
    # CPU seconds of this process (the shared VM's load stretches wall time; both are printed)
    _, c_gen, w_gen = _cpu_and_wall(lambda: sum(1 for _ in synthetic_states(ranks, workers, pool, steps)))
    one = next(synthetic_states(ranks, workers, pool, steps))
    one_json = len(json.dumps({**one, "core": {k: (v.tolist() if isinstance(v, np.ndarray) else v)
                                               for k, v in one["core"].items()}}))
    g, c_gather, w_gather = _cpu_and_wall(lambda: rsdb.gather_state(synthetic_states(ranks, workers, pool, steps)))
    c_gather, w_gather = c_gather - c_gen, w_gather - w_gen  # the generator's own cost, measured alone above
    text, c_dump, _ = _cpu_and_wall(lambda: json.dumps(g, separators=(",", ":")))
    g2, c_load, _ = _cpu_and_wall(lambda: json.loads(text))
    _, c_verify, _ = _cpu_and_wall(lambda: verify_global(g2))
    dec, c_decode, _ = _cpu_and_wall(lambda: Decoded(g2))
    S2 = new_ranks * workers
    picks = list(range(0, S2, max(1, S2 // 16)))
    shares, c_share, _ = _cpu_and_wall(lambda: [dec.share(S2, k) for k in picks])
    c_share /= len(picks)
    core, c_core, _ = _cpu_and_wall(lambda: core_state(g2, shares[0], None, g2["core_version"]))
    t_gather, t_gen = c_gather, c_gen
    t_dump, t_load, t_decode, t_share, t_core = c_dump, c_load + c_verify, c_decode, c_share, c_core
    emit(part="synthetic", ranks=ranks, workers=workers, pool_docs=pool, streams=ranks * workers,
         pool_docs_total=ranks * workers * pool, per_stream_state_bytes=one_json,
         per_stream_states_total_bytes=one_json * ranks * workers, global_state_bytes=len(text),
         global_bytes_per_pool_doc=round(len(text) / (ranks * workers * pool), 2),
         gather_cpu_s=round(t_gather, 2), gather_wall_s=round(w_gather, 2), generate_states_cpu_s=round(t_gen, 2),
         json_dump_cpu_s=round(t_dump, 2),
         json_load_verify_cpu_s=round(t_load, 2), decode_cpu_s=round(t_decode, 2),
         deal_one_stream_cpu_s=round(t_share, 4), core_state_cpu_s=round(t_core, 4),
         restore_one_stream_cpu_s=round(t_load + t_decode + t_share + t_core, 2),
         restored_on=f"{new_ranks} ranks x {workers} workers",
         carried_docs_per_new_stream=int(sum(len(p[0]) for p in shares[0]["partial"])),
         carried_pieces_per_new_stream=int(sum(len(p) for p in shares[0]["pieces"])),
         core_partials=len(core["partial_doc"]),
         peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))


# ---- real corpus -----------------------------------------------------------------------
def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def run_real(tokens: int, pool: int, batches: int, rounds: int) -> None:
    sys.path.insert(0, str(HERE))
    import loader_corpus as corpus

    import rsdb

    spec = corpus.CorpusSpec(tokens=tokens)
    paths = corpus.build_rsdb(spec, corpus.default_root())["paths"]
    kw = dict(seq_len=8192, buffer_docs=pool, seed=0,
              phases=[rsdb.Phase(10**13, {"web": 0.6, "code": 0.25, "math": 0.15})])
    # the original configuration: 4 workers per GPU, 4,096 documents per pool
    rss0 = _rss_mb()
    t0 = time.perf_counter()
    loaders = [rsdb.RSDBLoader(paths, batch_size=8, worker_id=w, num_workers=4, **kw) for w in range(4)]
    for loader in loaders:
        next(loader)
    startup = time.perf_counter() - t0
    state_bytes = [len(json.dumps(loader.state_dict())) for loader in loaders]
    emit(part="real", what="original configuration: 1 rank x 4 workers x 4,096-document pools",
         corpus_tokens=tokens, corpus_docs=sum(rsdb.open_shards(p).num_docs for p in paths.values()),
         startup_s_4_streams=round(startup, 2), rss_mb_4_streams=round(_rss_mb() - rss0),
         state_bytes_per_stream=state_bytes)
    # a reshard: run the 4 streams to global step 15 (4 done above), gather, restore on 3 workers, batch 12
    for g in range(4, 15):
        next(loaders[g % 4])
    t0 = time.perf_counter()
    g = rsdb.gather_state([loader.state_dict() for loader in loaders])
    t_gather = time.perf_counter() - t0
    new = dict(kw, batch_size=12, worker_id=0, num_workers=3)

    def restored():
        loader = rsdb.RSDBLoader(paths, **new)
        loader.load_state_dict(g)
        return loader

    def fresh():
        return rsdb.RSDBLoader(paths, **new)

    t0 = time.perf_counter()
    restored()
    t_restore = time.perf_counter() - t0
    rates = {"restored": [], "fresh": []}
    for i in range(rounds):
        order = (("restored", restored), ("fresh", fresh))
        for name, make in order if i % 2 == 0 else order[::-1]:  # alternate, so neither always goes first
            loader = make()
            next(loader)  # start-up (first pool) excluded: steady-state throughput
            t0 = time.process_time()  # CPU seconds: the shared VM's load stretches wall time
            n = sum(int(b["tokens"].size) for _, b in zip(range(batches), loader))
            rates[name].append(n / (time.process_time() - t0) / 1e6)
    med = {k: float(np.median(v)) for k, v in rates.items()}
    emit(part="real", what="M tokens per CPU-second after reshard 1x4 (batch 8) -> 1x3 (batch 12), stream 0, steady state",
         gather_s_4_streams=round(t_gather, 3), restore_s_one_stream=round(t_restore, 3),
         global_state_bytes=len(json.dumps(g)), batches_per_round=batches, rounds=rounds,
         mtokens_per_s_restored=[round(x) for x in rates["restored"]],
         mtokens_per_s_fresh=[round(x) for x in rates["fresh"]],
         median_restored=round(med["restored"]), median_fresh=round(med["fresh"]),
         restored_over_fresh=round(med["restored"] / med["fresh"], 3))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--part", choices=["synthetic", "real", "both"], default="both")
    p.add_argument("--ranks", type=int, nargs="+", default=[256, 2048], help="synthetic sizes (4 workers each)")
    p.add_argument("--new-ranks", type=int, default=1536)
    p.add_argument("--pool", type=int, default=4096)
    p.add_argument("--tokens", type=int, default=40_000_000, help="real corpus size")
    p.add_argument("--batches", type=int, default=600)
    p.add_argument("--rounds", type=int, default=9)
    p.add_argument("--one", type=int, help=argparse.SUPPRESS)  # child process: one synthetic size
    a = p.parse_args(argv)
    if a.one:
        run_synthetic(a.one, 4, a.pool, a.new_ranks)
        return 0
    if a.part in ("synthetic", "both"):
        for ranks in a.ranks:  # a fresh process per size, so peak RSS is that size's
            subprocess.run([sys.executable, __file__, "--one", str(ranks), "--pool", str(a.pool),
                            "--new-ranks", str(a.new_ranks)], check=True)
    if a.part in ("real", "both"):
        run_real(a.tokens, a.pool, a.batches, a.rounds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
