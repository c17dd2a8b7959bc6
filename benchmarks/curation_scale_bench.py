"""Curation at scale on a real 2-node loopback Ray cluster, submitted with ``ray job submit``.

    .venv/bin/python benchmarks/curation_scale_bench.py [--scales 1,8] [--base-docs 0] [--workers 1,2]

For each scale S the corpus is the demo corpus (or its first ``--base-docs`` documents)
written S times: copy 0 is the original; in copies 1..S-1 most documents are *distinct*
(30% of their words replaced by random letter words, or with ``--fresh-words corpus`` by
words of the base corpus drawn by frequency) and every tenth document is a
*planted near-duplicate* (1% of its words replaced), whose ground truth is "drop it, keep
the original". "Words" are the units the MinHash stage shingles on (runs of letters and
digits, ``pipeline.stages.dedup.minhash``), not whitespace tokens: a short Chinese poem is
a few whitespace tokens but many MinHash words, and replacing whitespace tokens left most
of its 5-word shingles intact. The 5-gram shingle Jaccard of every copy with its original
is measured with the stage's own shingles and reported (``curation_scale/ground_truth``).
``--dedup-only`` runs just normalize and the two dedup stages, so every copy reaches
dedup. The corpus is written as a
multi-frame ``.jsonl.zst`` (one zstd frame per 4 MB), so every work unit decodes only its
own frame.

The cluster (``jobs.loopback.LoopbackCluster``): ``ray start --head`` (1 CPU, job server on 127.0.0.1) plus one
``ray start --address`` worker node (1 CPU, its own object store), each in its own
process group under its own ``--temp-dir``, stopped by signalling those groups (never
``ray stop``). Token auth is off for this loopback cluster (``RAY_AUTH_MODE=disabled``).
Each run is ``ray job submit -- python -m jobs.curate --config ...`` with
``ray.workers`` = 1 or 2; stages: normalize, langid, quality (all four rule sets, on prose sources),
exact_dedup, minhash_dedup.

Reported per run (one JSON line): wall time of the job, wall time per phase (plan, map,
each dedup, write) from the manifest, the serial fraction (driver CPU seconds / wall: work
the driver does itself, which no worker count speeds up), driver peak RSS, object-store
peak (the dashboard's cluster status, ``ray status``'s text, sampled every second), the Amdahl projection to 100 and 1,000 workers
from the serial fraction, and planted near-duplicate precision and recall; then the
growth from the smallest to the largest scale (wall, driver RSS) and the speed-up of 2
workers over 1. The load average is printed with every line: on a shared machine the
figures are only comparable within one run.
"""

from __future__ import annotations

import argparse
import bisect
import io
import itertools
import json
import os
import random
import re
import secrets
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from jobs.loopback import LoopbackCluster  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEMO = Path(os.environ.get("TRINITY_SHARED", REPO.parent / "shared")) / "corpus" / "demo.jsonl.zst"
FRAME_BYTES = 4 << 20
PLANT_EVERY = 10
# All four rule sets (Gopher quality + repetition, C4, FineWeb) on prose; code passes to dedup.
STAGES = ["normalize", {"langid": {"prefix_chars": 500}}, {"quality": {"only": {"source": ["web-docs", "docs-rst"]}}},
          "exact_dedup", "minhash_dedup"]
DEDUP_STAGES = ["normalize", "exact_dedup", "minhash_dedup"]


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def emit(**kw) -> None:
    kw["loadavg"] = loadavg()
    print(json.dumps(kw), flush=True)


# ----------------------------------------------------------------------------- corpus


def load_demo(limit: int) -> list[dict]:
    import zstandard

    rows = []
    with open(DEMO, "rb") as f:
        for line in io.TextIOWrapper(zstandard.ZstdDecompressor().stream_reader(f), encoding="utf-8"):
            rows.append(json.loads(line))
            if limit and len(rows) >= limit:
                break
    return rows


#: the word units MinHash shingles on (``minhash._WORD``: runs of letters and digits)
_MINHASH_WORD = re.compile(r"[^\W_]+")


class FreshWords:
    """Replacement words: random letter strings (``letters``: each a word never seen before,
    the worst case for the quality stage's word caches) or words drawn from the base corpus
    by their frequency in it (``corpus``: new documents made of known words, as web text is).
    A corpus word without digits is one MinHash word, as a letter string is."""

    def __init__(self, kind: str, rows: list[dict]):
        self.kind = kind
        self.vocab: list[str] = []
        if kind == "corpus":
            counts: dict[str, int] = {}
            for r in rows:
                for w in _MINHASH_WORD.findall(r["text"]):
                    if not any(ch.isdigit() for ch in w):  # digits fold to 0 in MinHash: "12" would equal "34"
                        counts[w] = counts.get(w, 0) + 1
            words = sorted(counts)
            self.vocab = words
            self.cum = list(itertools.accumulate(counts[w] for w in words))

    def __call__(self, rng: random.Random, old: str = "") -> str:
        while True:
            if self.kind == "letters":
                w = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(4, 9)))
            else:
                w = self.vocab[bisect.bisect_left(self.cum, rng.random() * self.cum[-1])]
            if w.lower() != old.lower():  # a replacement equal to the word would leave the copy unchanged
                return w


def perturb(text: str, share: float, rng: random.Random, fresh: FreshWords) -> str:
    """Replace ``share`` of the MinHash words (everything between them kept) by fresh words.

    Fresh words always differ from the ones they replace (a word drawn from the same text
    would often be the same one, e.g. in code, and leave the copy an exact duplicate), and
    are one MinHash word each (letters only, and the characters around a word are not word
    characters), so a copy has exactly as many MinHash words as its original.
    """
    spans = [m.span() for m in _MINHASH_WORD.finditer(text)]
    if not spans:
        return text + " " + fresh(rng)
    out, pos = [], 0
    for a, b in sorted(rng.sample(spans, max(1, int(len(spans) * share)))):
        out += [text[pos:a], fresh(rng, text[a:b])]
        pos = b
    out.append(text[pos:])
    return "".join(out)


def shingle_jaccard(hasher, a: str, b: str) -> float:
    """Jaccard similarity of two texts' MinHash shingle sets (the stage's own shingles)."""
    sa, sb = set(hasher.shingles(a).tolist()), set(hasher.shingles(b).tolist())
    return len(sa & sb) / max(1, len(sa | sb))


def build_corpus(rows: list[dict], scale: int, path: Path,
                 fresh: FreshWords) -> tuple[set[str], dict[str, list[float]], set[str]]:
    """Write the corpus; returns the ids of the planted near-duplicates, the shingle Jaccard
    of every distinct and every planted copy with its original, and the ids of the planted
    copies at or above the LSH threshold (1% of a short document's words can already break
    most of its shingles: such a copy is not a near-duplicate MinHash is meant to find)."""
    import zstandard

    from pipeline.stages.dedup.minhash import MinHashConfig, MinHasher

    hasher = MinHasher(MinHashConfig())
    rng = random.Random(scale)
    planted: set[str] = set()
    jaccard: dict[str, list[float]] = {"distinct": [], "planted": []}
    similar: set[str] = set()  # planted copies whose Jaccard is at least the LSH threshold
    threshold = lsh_threshold()
    cctx = zstandard.ZstdCompressor(level=3)
    buf = bytearray()
    with open(path, "wb") as f:
        for copy in range(scale):
            for i, r in enumerate(rows):
                rec = dict(r)
                if copy:
                    near = i % PLANT_EVERY == 0
                    rec["id"] = f"{r['id']}~c{copy}"
                    rec["text"] = perturb(r["text"], 0.01 if near else 0.30, rng, fresh)
                    if near:
                        planted.add(rec["id"])
                    j = shingle_jaccard(hasher, r["text"], rec["text"])
                    jaccard["planted" if near else "distinct"].append(j)
                    if near and j >= threshold:
                        similar.add(rec["id"])
                buf += json.dumps(rec, ensure_ascii=False).encode() + b"\n"
                if len(buf) >= FRAME_BYTES:
                    f.write(cctx.compress(bytes(buf)))
                    buf.clear()
        if buf:
            f.write(cctx.compress(bytes(buf)))
    return planted, jaccard, similar


def lsh_threshold(cfg=None) -> float:
    """The Jaccard at which two documents share a band with probability 1/2 (LSH's S-curve)."""
    from pipeline.stages.dedup.minhash import MinHashConfig

    cfg = cfg or MinHashConfig()
    return (1 - 0.5 ** (1 / cfg.num_bands)) ** (1 / cfg.rows_per_band)


def jaccard_summary(values: list[float], threshold: float) -> dict[str, float | int]:
    if not values:
        return {"n": 0}
    v = sorted(values)
    return {"n": len(v), "min": round(v[0], 3), "median": round(v[len(v) // 2], 3),
            "p99": round(v[min(len(v) - 1, int(len(v) * 0.99))], 3), "max": round(v[-1], 3),
            "above_threshold": sum(x >= threshold for x in v)}


# ----------------------------------------------------------------------------- cluster


def noop_job_wall(cluster: LoopbackCluster) -> float:
    """Wall seconds of ``ray job submit`` of a job that does nothing: Ray's fixed cost per job."""
    started = time.perf_counter()
    res = cluster.submit([sys.executable, "-c", "pass"])
    if res.returncode != 0:
        raise RuntimeError(f"no-op job failed:\n{res.stdout[-2000:]}\n{res.stderr[-2000:]}")
    return time.perf_counter() - started


def submit_curate(cluster: LoopbackCluster, config: Path) -> tuple[float, str, float, dict[str, Any]]:
    """``ray job submit`` the curate job; (wall seconds, its output, object-store peak in bytes,
    CPU seconds per process kind)."""
    peak = [0.0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(1.0):
            try:
                peak[0] = max(peak[0], cluster.status().get("object_store_used", 0.0))
            except (OSError, ValueError, KeyError):
                pass

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    cpu = CpuAccount()
    started = time.perf_counter()
    res = cluster.submit([sys.executable, "-m", "jobs.curate", "--config", str(config)],
                         submission_id=f"curate-scale-{secrets.token_hex(4)}")
    wall = time.perf_counter() - started
    cpu_s = cpu.finish()
    stop.set()
    t.join()
    if res.returncode != 0:
        raise RuntimeError(f"curate job failed:\n{res.stdout[-3000:]}\n{res.stderr[-2000:]}")
    return wall, res.stdout, peak[0], cpu_s


# ----------------------------------------------------------------------------- CPU accounting

_TICK = os.sysconf("SC_CLK_TCK")


def _kind(cmdline: str) -> str:
    """Which part of the run a process is, from its command line."""
    if cmdline.startswith("ray::") or "default_worker.py" in cmdline:
        return "ray_workers"  # the map actors and the dedup/write tasks (and idle pooled workers)
    for needle, kind in (("jobs.curate", "driver"), ("raylet", "raylet"), ("gcs_server", "gcs"),
                         ("dashboard", "dashboard_and_agents"), ("runtime_env", "dashboard_and_agents"),
                         ("log_monitor", "dashboard_and_agents"), ("monitor.py", "dashboard_and_agents"),
                         ("ray status", "ray_cli"), ("ray job", "ray_cli"), ("bin/ray ", "ray_cli")):
        if needle in cmdline:
            return kind
    return "other"


def _proc_cpu() -> dict[int, tuple[str, float, str]]:
    """CPU seconds (user + system) of every live process, with its kind and command line."""
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{d}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # exited meanwhile
        out[int(d)] = (_kind(cmd), (int(fields[11]) + int(fields[12])) / _TICK, cmd[:100])
    return out


def _machine_cpu() -> dict[str, float]:
    """Machine-wide busy, idle and steal seconds since boot (``/proc/stat``)."""
    with open("/proc/stat") as f:
        v = [int(x) / _TICK for x in f.readline().split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = (v + [0.0] * 8)[:8]
    return {"busy": user + nice + system + irq + softirq, "idle": idle + iowait, "steal": steal}


class CpuAccount:
    """Where the machine's CPU went during one job: seconds per process kind, plus idle and
    steal (time the hypervisor gave to others). ``/proc`` is read every half second, so a
    short-lived process loses at most its last half second."""

    def __init__(self) -> None:
        self.first = _proc_cpu()  # processes already running: only their growth counts
        self.last = dict(self.first)
        self.m0 = _machine_cpu()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.wait(0.5):
            self._sample()

    def _sample(self) -> None:
        for pid, (kind, cpu, cmd) in _proc_cpu().items():
            if not cmd and pid in self.last:  # an exited process (zombie) shows no command line
                kind, cmd = self.last[pid][0], self.last[pid][2]
            self.last[pid] = (kind, cpu, cmd)

    def finish(self) -> dict[str, Any]:
        self.stop.set()
        self.thread.join()
        self._sample()
        m1 = _machine_cpu()
        by: dict[str, float] = {}
        other: list[tuple[float, str]] = []
        for pid, (kind, cpu, cmd) in self.last.items():
            used = cpu - self.first.get(pid, (kind, 0.0, cmd))[1]
            by[kind] = by.get(kind, 0.0) + used
            if kind == "other" and used >= 1.0:
                other.append((round(used, 1), cmd))
        out: dict[str, Any] = {k: round(v, 1) for k, v in sorted(by.items())}
        out["other_top"] = sorted(other, reverse=True)[:3]
        out.update({f"machine_{k}": round(m1[k] - self.m0[k], 1) for k in m1})
        return out


# ----------------------------------------------------------------------------- one run


def precision_recall(out: Path, planted: set[str], similar: set[str] | None = None) -> dict[str, float | int]:
    import pyarrow.parquet as pq

    from pipeline.layout import REJECTED, run_folder

    run = Path(run_folder(str(out)))  # rejected rows sit in the run folder beside the kept shards
    rejected = pq.read_table(sorted(run.glob(f"{REJECTED}/*.parquet")), columns=["id", "reject_stage"]).to_pylist()
    reached = {r["id"] for r in pq.read_table(sorted(out.glob("part-*.parquet")), columns=["id"]).to_pylist()}
    dropped = {r["id"] for r in rejected if r["reject_stage"] in ("exact_dedup", "minhash_dedup")}
    reached |= dropped  # every row that got to the dedup stages
    copies = {i for i in reached | dropped if "~c" in i}
    tp = len(dropped & planted)
    wrong = len(dropped & (copies - planted))  # a heavily perturbed (distinct) copy dropped
    return {"planted_reaching_dedup": len(planted & reached), "dropped": len(dropped), "planted_dropped": tp,
            "distinct_copies_dropped": wrong,
            "recall": round(tp / max(1, len(planted & reached)), 4),
            "precision": round(tp / max(1, tp + wrong), 4),
            **({"recall_above_threshold": round(len(dropped & similar) / max(1, len(similar & reached)), 4),
                "planted_above_threshold": len(similar & reached)} if similar is not None else {})}


def stage_seconds(manifest: dict) -> dict[str, float]:
    """Summed per-unit wall seconds of each map stage: the work itself, without waiting."""
    return {st["stage"]: round(st.get("seconds", 0.0), 1) for st in manifest.get("stages", [])}


def run_once(cluster: LoopbackCluster, work: Path, corpus: Path, planted: set[str], scale: int,
             workers: int, mb: float, unit_rows: int = 1000, stages: list | None = None,
             similar: set[str] | None = None) -> dict:
    import yaml

    out = work / f"out-{scale}x-{workers}w"
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(f"{out}.curation", ignore_errors=True)  # its run folder
    config = work / f"curate-{scale}x-{workers}w.yaml"
    config.write_text(yaml.safe_dump({
        "input": {"paths": [str(corpus)], "rename": {"lang": "lang_label"}, "unit_rows": unit_rows},
        "stages": stages or STAGES, "output": {"path": str(out)}, "ray": {"workers": workers}, "progress": False}))
    wall, _, store_peak, cpu_s = submit_curate(cluster, config)
    from pipeline.manifest import load_manifest

    m = load_manifest(str(out)).to_json()
    driver = m.get("driver", {})
    serial = driver.get("cpu_s", 0.0) / max(driver.get("wall_s", wall), 1e-9)
    amdahl = {n: round(1 / (serial + (1 - serial) / n), 1) for n in (100, 1000)}
    row = {"name": "curation_scale", "scale": scale, "workers": workers, "nodes": 2, "input_mb": round(mb, 1),
           "docs_in": m["input"]["rows"], "docs_kept": m["rows"], "job_wall_s": round(wall, 2),
           "run_wall_s": round(driver.get("wall_s", 0.0), 2), "mb_per_s": round(mb / wall, 3),
           "phases_s": m.get("phases", {}), "serial_fraction": round(serial, 4),
           "driver_cpu_s": round(driver.get("cpu_s", 0.0), 2), "driver_peak_rss_mb": driver.get("peak_rss_mb"),
           "object_store_peak_mb": round(store_peak / 1e6, 1), "amdahl_speedup": amdahl,
           "cpu_s_by_process": cpu_s, "stage_seconds": stage_seconds(m),
           **precision_recall(out, planted, similar)}
    emit(**row)
    shutil.rmtree(out, ignore_errors=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scales", default="1,8", help="corpus sizes in copies of the base corpus")
    ap.add_argument("--workers", default="1,2", help="ray.workers values to run at every scale")
    ap.add_argument("--base-docs", type=int, default=0, help="first N demo documents as the base (0: all 3,344)")
    ap.add_argument("--unit-rows", type=int, default=1000, help="input.unit_rows: rows per work unit")
    ap.add_argument("--work", default=None, help="work folder (default: a temporary one)")
    ap.add_argument("--dedup-only", action="store_true",
                    help="stages normalize, exact_dedup, minhash_dedup only (every copy reaches dedup)")
    ap.add_argument("--fresh-words", choices=["letters", "corpus"], default="letters",
                    help="replacement words of the perturbed copies: random letters (never seen: the "
                         "word caches' worst case) or corpus words by frequency (as web text)")
    args = ap.parse_args()
    stages = DEDUP_STAGES if args.dedup_only else STAGES
    scales = [int(x) for x in args.scales.split(",")]
    worker_counts = [int(x) for x in args.workers.split(",")]
    work = Path(args.work or tempfile.mkdtemp(prefix="curation-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    base = load_demo(args.base_docs)
    fresh = FreshWords(args.fresh_words, base)
    corpora = {}
    for s in scales:
        path = work / f"corpus-{s}x.jsonl.zst"
        planted, jaccard, similar = build_corpus(base, s, path, fresh)
        mb = sum(len(json.dumps(r, ensure_ascii=False).encode()) + 1 for r in base) * s / 1e6
        corpora[s] = (path, planted, mb, similar)
        emit(name="curation_scale/corpus", scale=s, fresh_words=args.fresh_words, docs=len(base) * s, mb=round(mb, 1), planted=len(planted),
             file_mb=round(path.stat().st_size / 1e6, 1))
        threshold = lsh_threshold()
        emit(name="curation_scale/ground_truth", scale=s, lsh_threshold=round(threshold, 3),
             distinct_jaccard=jaccard_summary(jaccard["distinct"], threshold),
             planted_jaccard=jaccard_summary(jaccard["planted"], threshold),
             note="5-gram shingle Jaccard of each copy with its original, the MinHash stage's shingles")
    cluster = LoopbackCluster(work, worker_nodes=1, num_cpus=1)
    cluster.start()
    rows = []
    try:
        noop = [round(noop_job_wall(cluster), 2) for _ in range(2)]
        emit(name="curation_scale/noop_job", job_wall_s=noop,
             note="ray job submit of `python -c pass`: submission, job supervisor and driver start-up")
        for s in scales:
            for w in worker_counts:
                rows.append(run_once(cluster, work, *corpora[s][:2], s, w, corpora[s][2], args.unit_rows, stages,
                                     corpora[s][3]))
    finally:
        cluster.stop()
    by = {(r["scale"], r["workers"]): r for r in rows}
    lo, hi = min(scales), max(scales)
    for w in worker_counts:
        a, b = by[(lo, w)], by[(hi, w)]
        emit(name="curation_scale/growth", workers=w, scales=[lo, hi], wall_ratio=round(b["job_wall_s"] / a["job_wall_s"], 2),
             input_ratio=hi / lo, driver_rss_mb=[a["driver_peak_rss_mb"], b["driver_peak_rss_mb"]])
    if 1 in worker_counts and 2 in worker_counts:
        for s in scales:
            emit(name="curation_scale/speedup", scale=s,
                 two_over_one=round(by[(s, 1)]["job_wall_s"] / by[(s, 2)]["job_wall_s"], 2))
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
