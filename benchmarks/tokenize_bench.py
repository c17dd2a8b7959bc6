"""Throughput of the tokenize job: tokens/s per core and on 2 workers, side by side.

Measures, in one run on the same text and tokenizer:
  * raw: ``Tokenizer.encode_batch`` in this process with one encoder thread, and the tiktoken
    twin (``tokenizer.FastEncoder``, identical ids) the job uses by default, one thread,
  * job-1: ``tokenize_to_shards`` on a local Ray cluster with 1 worker (encode + write shards),
  * job-2: the same with 2 workers.

Usage:
    python benchmarks/tokenize_bench.py [--tokenizer DIR] [--copies 2] [--json-out F]

Without ``--tokenizer`` a small tokenizer (vocab 8192) is trained on the corpus first. The text is
``../shared/corpus/demo.jsonl.zst`` (30 MB), repeated ``--copies`` times and split into 8 Parquet files.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAYON_RS_NUM_CPUS", "1")  # one encoder thread in this process: per-core figures

import pyarrow as pa
import pyarrow.parquet as pq
import zstandard

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    except OSError:
        return "unknown"


def load_corpus(path: Path) -> list[dict]:
    rows = []
    with zstandard.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            rows.append({"id": d["id"], "text": d["text"], "lang": d["lang"], "source": d["source"]})
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", default=str(REPO.parent / "shared"))
    ap.add_argument("--tokenizer", help="trained tokenizer folder (default: train a vocab-8192 one)")
    ap.add_argument("--copies", type=int, default=2, help="repeat the corpus this many times")
    ap.add_argument("--files", type=int, default=8)
    ap.add_argument("--json-out")
    args = ap.parse_args()

    import ray

    import tokenizer
    from tokenizer.tokenize_job import TokenizeConfig, tokenize_to_shards

    rows = load_corpus(Path(args.shared) / "corpus" / "demo.jsonl.zst") * args.copies
    text_bytes = sum(len(r["text"].encode()) for r in rows)
    work = Path(tempfile.mkdtemp(prefix="tokenize-bench-"))
    try:
        tok_dir = args.tokenizer
        if tok_dir is None:
            tok_dir = str(work / "tok")
            cfg = tokenizer.TrainConfig(inputs=["-"], vocab_size=8192)
            tokenizer.train(cfg, texts=[r["text"] for r in rows[: len(rows) // args.copies]], out_dir=tok_dir)
        curated = work / "curated"
        curated.mkdir()
        per = (len(rows) + args.files - 1) // args.files
        for i in range(args.files):
            pq.write_table(pa.Table.from_pylist(rows[i * per:(i + 1) * per]), curated / f"part-{i:03d}.parquet")

        tok = tokenizer.load(tok_dir)
        texts = [r["text"] for r in rows]
        t0 = time.perf_counter()
        n_tokens = sum(len(e.ids) for e in tok.encode_batch(texts[:200], add_special_tokens=False))  # warm-up
        t0 = time.perf_counter()
        n_tokens = 0
        for i in range(0, len(texts), 512):
            n_tokens += sum(len(e.ids) for e in tok.encode_batch(texts[i:i + 512], add_special_tokens=False))
        raw_s = time.perf_counter() - t0
        results = [{"name": "raw_tokenizers_1thr", "tokens": n_tokens, "seconds": raw_s,
                    "tokens_s": n_tokens / raw_s, "mb_s": text_bytes / raw_s / 1e6}]
        fast = tokenizer.FastEncoder(tok, threads=1)
        fast.encode_batch(texts[:200])
        t0 = time.perf_counter()
        n_fast = sum(len(ids) for i in range(0, len(texts), 512) for ids in fast.encode_batch(texts[i:i + 512]))
        fast_s = time.perf_counter() - t0
        results.append({"name": "raw_tiktoken_twin_1thr", "tokens": n_fast, "seconds": fast_s,
                        "tokens_s": n_fast / fast_s, "mb_s": text_bytes / fast_s / 1e6})

        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        for workers in (1, 2):
            out = work / f"tokens-{workers}"
            cfg = TokenizeConfig(tokenizer=tok_dir, inputs=[str(curated)], output=str(out), source_field="source",
                                 workers=workers)
            t0 = time.perf_counter()
            summary = tokenize_to_shards(cfg)
            secs = time.perf_counter() - t0
            results.append({"name": f"tokenize_job_{workers}w", "tokens": summary.tokens, "seconds": secs,
                            "tokens_s": summary.tokens / secs, "tokens_s_per_worker": summary.tokens / secs / workers,
                            "mb_s": text_bytes / secs / 1e6})
        ray.shutdown()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    meta = {"device": f"{os.cpu_count()}-core CPU", "commit": _commit(), "text_mb": text_bytes / 1e6}
    for r in results:
        print(json.dumps({**r, **meta}))
    print(f"\n{'measurement':<22}{'tokens/s':>14}{'MB/s':>8}{'seconds':>9}")
    for r in results:
        print(f"{r['name']:<22}{r['tokens_s']:>14,.0f}{r['mb_s']:>8.2f}{r['seconds']:>9.1f}")
    if args.json_out:
        Path(args.json_out).write_text("\n".join(json.dumps({**r, **meta}) for r in results) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
