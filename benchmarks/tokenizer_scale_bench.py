"""Tokenizer training at scale: the sharded route against plain BpeTrainer, 200k vocab.

    .venv/bin/python benchmarks/tokenizer_corpus_gen.py --out /tmp/gen --gb 2
    .venv/bin/python benchmarks/tokenizer_scale_bench.py --data /tmp/gen --sizes 0.25 0.5 1 2
    .venv/bin/python benchmarks/tokenizer_scale_bench.py --only prune      # pruning vs merges, real text

``scale``: for each input size (the first shards of the generated corpus), side by
side in one run, each training in a fresh process group whose memory (the process
plus all its workers, sampled from /proc every 0.2 s) is watched:

* ``direct``: plain `tokenizers` BpeTrainer fed the text (``route="direct"``). The
  machine is shared, so it is killed once it passes ``--direct-cap`` (default
  5 GB): the record then says ``exceeded`` and at how many GB of input.
* ``sharded``: the out-of-core route with ``--max-memory`` (default 4 GB); the
  record checks the measured peak against the budget, and gives counting and
  merging throughput per core.

``prune``: on the real demo corpus (vocab 32k), the merges learned from all
pre-tokens against those learned after pruning (min count 2; top 100k; top 30k):
how many of the first merges are identical, the overlap of the merge sets, the
count mass kept and bytes per token on held-out text.

One JSON line per measurement, with the 1-minute load average.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
CORPUS = REPO.parent / "shared" / "corpus" / "demo.jsonl.zst"


def emit(out: Path | None, record: dict) -> None:
    record = {**record, "load_avg_1m": round(os.getloadavg()[0], 2)}
    line = json.dumps(record)
    print(line, flush=True)
    if out is not None:
        with open(out / "scale_results.jsonl", "a") as f:
            f.write(line + "\n")


def _child(cfg_json: str, report_path: str) -> int:
    import tokenizer

    cfg = tokenizer.TrainConfig.model_validate_json(cfg_json)
    res = tokenizer.train(cfg, progress=False)
    Path(report_path).write_text(json.dumps(res.report, default=str))
    merges = json.loads(res.tokenizer.to_str())["model"]["merges"]
    Path(report_path + ".merges").write_text(json.dumps(merges))
    return 0


def run_watched(cfg, cap_bytes: int, scratch: Path, timeout_s: float) -> dict:
    """Train ``cfg`` in a new process group; kill it past ``cap_bytes`` or ``timeout_s``."""
    from tokenizer.memory import tree_rss

    report = scratch / f"report-{time.monotonic_ns()}.json"
    proc = subprocess.Popen(
        [sys.executable, __file__, "--child", cfg.model_dump_json(), str(report)],
        start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    started = time.perf_counter()
    peak, status = 0, "ok"
    while proc.poll() is None:
        rss = tree_rss(proc.pid)
        peak = max(peak, rss)
        if rss > cap_bytes:
            status = "exceeded"
        elif time.perf_counter() - started > timeout_s:
            status = "timeout"
        if status != "ok":
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            break
        time.sleep(0.2)
    wall = time.perf_counter() - started
    out = {"status": status, "wall_s": round(wall, 1), "peak_rss_tree_mb": round(peak / 1e6, 1)}
    if status == "ok" and proc.returncode != 0:
        out["status"] = f"failed rc={proc.returncode}"
        out["stderr_tail"] = proc.stderr.read().decode(errors="replace")[-800:]
    if report.exists():
        out["report"] = json.loads(report.read_text())
        out["merges_file"] = str(report) + ".merges"
    return out


def bench_scale(args) -> None:
    import tokenizer
    from tokenizer.memory import parse_bytes

    shards = sorted(args.data.glob("shard-*.txt"))
    if not shards:
        raise SystemExit(f"no shard-*.txt under {args.data}: run benchmarks/tokenizer_corpus_gen.py first")
    shard_bytes = shards[0].stat().st_size
    scratch = args.out / "scratch"
    scratch.mkdir(parents=True, exist_ok=True)
    direct_dead_at = None
    for gb in args.sizes:
        k = max(1, math.ceil(gb * 1e9 / shard_bytes - 1e-9))
        if k > len(shards):
            raise SystemExit(f"{gb} GB needs {k} shards, {args.data} has {len(shards)}")
        inputs = [str(p) for p in shards[:k]]
        nbytes = min(int(gb * 1e9), sum(p.stat().st_size for p in shards[:k]))
        base = dict(inputs=inputs, vocab_size=args.vocab_size, max_bytes=int(gb * 1e9))
        routes = []
        if "direct" in args.routes:
            routes.append(("direct", tokenizer.TrainConfig(**base), parse_bytes(args.direct_cap)))
        if "sharded" in args.routes:
            cfg = tokenizer.TrainConfig(**base, route="sharded", workers=args.workers, max_memory=args.max_memory,
                                        min_count=args.min_count, max_words=args.max_words, work_dir=str(scratch / f"counts-{gb}"))
            # Safety cap for the shared machine: a little above the budget under test.
            routes.append(("sharded", cfg, parse_bytes(args.max_memory) + 500 * 10**6))
        for name, cfg, cap in routes:
            if name == "direct" and direct_dead_at is not None:
                emit(args.out, {"name": "scale_direct", "input_gb": round(nbytes / 1e9, 3), "status": "skipped",
                                "why": f"exceeded {args.direct_cap} at {direct_dead_at} GB already"})
                continue
            r = run_watched(cfg, cap, scratch, args.timeout)
            rec = {"name": f"scale_{name}", "input_gb": round(nbytes / 1e9, 3), "cap_mb": round(cap / 1e6),
                   **{k: v for k, v in r.items() if k not in ("report", "merges_file")}}
            rep = r.get("report")
            if rep:
                rec.update(vocab_reached=rep["vocab_reached"], seconds=rep["seconds"], peak_rss_mb=rep["peak_rss_mb"],
                           peak_rss_children_mb=rep["peak_rss_children_mb"])
                c = rep.get("counts") or {}
                if name == "sharded":
                    mb = nbytes / 1e6
                    rec.update({k: c.get(k) for k in (
                        "units", "distinct", "kept_distinct", "kept_mass_fraction", "threshold_count",
                        "estimated_train_mb", "count_s", "merge_s", "train_s", "peak_rss_tree_mb",
                        "max_memory_mb", "within_budget")})
                    rec["plan"] = c.get("plan")
                    rec["count_mb_s_per_core"] = round(mb / c["count_s"] / args.workers, 2)
                    # merge + train: one merging process, then the trainer (2 threads where free)
                    rec["merge_train_mb_s_per_core"] = round(mb / (c["merge_s"] + c["train_s"]) / os.cpu_count(), 2)
                    rec["watched_peak_within_budget"] = r["peak_rss_tree_mb"] <= c.get("max_memory_mb", 1e18)
                else:
                    rec["mb_s_per_core"] = round(nbytes / 1e6 / rep["seconds"] / os.cpu_count(), 2)
            if name == "direct" and r["status"] == "exceeded":
                direct_dead_at = round(nbytes / 1e9, 3)
            emit(args.out, rec)


def _merges_of(cfg) -> tuple[list, dict]:
    import tokenizer

    res = tokenizer.train(cfg)
    return json.loads(res.tokenizer.to_str())["model"]["merges"], res


def bench_prune(args) -> None:
    import tokenizer
    from tokenizer.corpus import iter_docs
    from tokenizer.evaluate import HFCandidate, evaluate

    # One count for all variants: the work dir is kept and the pruning options are not
    # part of its fingerprint, so the later variants resume every unit.
    base = dict(inputs=[str(args.corpus)], vocab_size=args.prune_vocab, holdout_fraction=0.05, route="sharded",
                workers=args.workers, work_dir=str(args.out / "prune-counts"), keep_counts=True)
    variants = {"all": {}, "min_count_2": {"min_count": 2}, "top_100k": {"max_words": 100_000},
                "top_30k": {"max_words": 30_000}}
    held = list(iter_docs(tokenizer.CorpusConfig(inputs=[str(args.corpus)], holdout_fraction=0.05), "heldout"))
    ref = None
    for name, extra in variants.items():
        out_dir = args.out / f"prune-{name}"
        res = tokenizer.train(tokenizer.TrainConfig(**base, **extra), out_dir=out_dir)
        merges = json.loads(res.tokenizer.to_str())["model"]["merges"]
        c = res.report["counts"]
        bpt = evaluate([HFCandidate(str(out_dir), name)], held)["overall"]["bytes_per_token"][name]
        rec = {"name": "prune_effect", "variant": name, "vocab": args.prune_vocab, "distinct": c["distinct"],
               "units_resumed": c["units_resumed"], "merge_s": c["merge_s"], "train_s": c["train_s"],
               "peak_rss_tree_mb": c["peak_rss_tree_mb"],
               "kept_distinct": c["kept_distinct"], "kept_mass_fraction": c["kept_mass_fraction"],
               "heldout_bytes_per_token": round(bpt, 4)}
        if ref is None:
            ref = merges
        else:
            rec.update(merge_stats(ref, merges))
        emit(args.out, rec)


def merge_stats(ref: list, merges: list, kind: str = "trinity") -> dict:
    """How far ``merges`` is from ``ref``, over the learned merges only (the forced
    digit merges that come first in every tokenizer are skipped): the identical
    prefix, and the overlap of the first 1k / 10k and of all learned merges."""
    from tokenizer.train import forced_merges

    skip = len(forced_merges(kind))
    a, b = [tuple(m) for m in ref[skip:]], [tuple(m) for m in merges[skip:]]
    prefix = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    out = {"learned_merges": len(a), "identical_prefix": prefix}
    for n in (1000, 10_000, len(a)):
        key = "overlap_all" if n == len(a) else f"overlap_first_{n // 1000}k"
        out[key] = round(len(set(a[:n]) & set(b[:n])) / max(1, min(n, len(a))), 4)
    return out


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        return _child(argv[1], argv[2])
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, help="folder of generated shard-*.txt")
    ap.add_argument("--sizes", type=float, nargs="+", default=[1, 2, 4, 8], help="input sizes in GB")
    ap.add_argument("--routes", nargs="+", default=["direct", "sharded"], choices=["direct", "sharded"])
    ap.add_argument("--vocab-size", type=int, default=200_000)
    ap.add_argument("--max-memory", default="4GB", help="budget of the sharded route")
    ap.add_argument("--min-count", type=int, default=1)
    ap.add_argument("--max-words", type=int, default=None, help="top-K pre-tokens kept by the sharded route")
    ap.add_argument("--direct-cap", default="5GB", help="kill plain BpeTrainer above this (shared machine)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=3600)
    ap.add_argument("--corpus", type=Path, default=CORPUS)
    ap.add_argument("--prune-vocab", type=int, default=32_768)
    ap.add_argument("--out", type=Path, default=REPO / "out" / "bench-tokenizer-scale")
    ap.add_argument("--only", nargs="+", choices=["scale", "prune"], default=["scale"])
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for step in args.only:
        globals()[f"bench_{step}"](args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
