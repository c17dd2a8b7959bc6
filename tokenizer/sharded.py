"""Training on corpora larger than memory: sharded counts spilled to disk.

Route ``sharded`` of :func:`tokenizer.train`. Peak memory follows the number of
distinct pre-tokens kept for training, not the input size:

1. **count**: the driver reads the documents (the same sampling, held-out split and
   ``max_bytes`` as every route) and cuts them into units of about ``unit_bytes``;
   worker processes (or Ray tasks, ``backend="ray"``) count each unit's byte-level pre-tokens and write them,
   sorted, to ``runs/u000123.tsv`` (one ``piece<TAB>count`` line each) plus a
   ``.json`` marker. A unit whose marker exists (and matches what the driver
   re-reads) is not counted again, so a run killed with ``kill -9`` resumes where
   it stopped.
2. **merge**: a streaming k-way merge (``heapq.merge``) of the sorted runs into
   ``merged.tsv``, summing equal pieces; memory is one buffered line per run. It
   also builds the histogram ``count -> (pieces, characters)``.
3. **prune**: from the histogram alone, the rarest pieces are dropped until what is
   left fits ``min_count``, ``max_words`` and the training share of
   ``max_memory`` (ties at the threshold are kept in key order, so the choice is
   deterministic). The report says how much of the count mass was kept.
4. **train**: the kept pieces stream from ``merged.tsv`` into the `tokenizers`
   BPE trainer, each as often as it was counted (see :mod:`tokenizer.counts`: the
   trainer has no train-from-counts entry point, and its feed keeps one entry per
   distinct piece, so memory is set by the kept pieces). Without pruning the
   merges are the direct route's, byte for byte (tested).

Why chunks before pre-tokens: the pre-tokenizer runs at ~2 MB/s per core
(Oniguruma, one alternative per script). Text is first cut before every ASCII
space that follows a non-space character; no pre-token crosses such a point (a
pre-token holds a space only as its first character, or inside a whitespace run),
so the pre-tokens of a text are those of its chunks. The chunks are counted with
``collections.Counter`` (C speed) and only distinct chunks are pre-tokenized, each
count multiplied: on Zipf-distributed text that is a small fraction of them.
"""

from __future__ import annotations

import heapq
import itertools
import json
import logging
import operator
import os
import re
import shutil
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import xxhash

from common.fs import atomic_path
from rsdb.errors import ConfigError

from .config import TrainConfig
from .counts import _pre_tokenizer, repeat_counts
from .memory import PeakSampler, parse_bytes

log = logging.getLogger(__name__)

FORMAT = 1
# No pre-token crosses the point before an ASCII space that follows a non-space
# character (Python's \S excludes every Unicode White_Space character, so the
# character before is not whitespace for Oniguruma either). See the docstring.
_CHUNK = re.compile(r"(?<=\S)(?= )")

# Memory model, measured with benchmarks/tokenizer_scale_bench.py (calibrate):
# the `tokenizers` BPE trainer holds, per distinct piece, its word entry, its
# symbols and the pair index; per character of the pieces, a symbol and its share
# of the pair index.
TRAIN_BYTES_PER_PIECE = 450
TRAIN_BYTES_PER_CHAR = 110
RUNTIME_BYTES = 450 * 10**6  # interpreter, tokenizers, pyarrow, the reading pipeline
WORKER_BYTES = 250 * 10**6  # one counting process before its unit
WORKER_BYTES_PER_UNIT_BYTE = 8  # the unit's text (sent, unpickled) and its counters


@dataclass
class Plan:
    """How a memory budget is spent: unit size for the counting phase, piece budget
    for training."""

    budget: int | None
    unit_bytes: int
    workers: int
    train_bytes: int | None  # what the trainer may use for pieces (None: no limit)

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def plan(cfg: TrainConfig) -> Plan:
    """The memory plan for ``cfg``; a budget too small for it fails before any work.

    Counting: ``workers`` processes each hold one unit, the driver up to
    ``workers + 1`` units in flight. Training: whatever the runtime leaves.
    """
    budget = parse_bytes(cfg.max_memory) if cfg.max_memory is not None else None
    unit = cfg.unit_bytes
    if unit is None:
        unit = 64 * 10**6
        if budget is not None:  # units small enough that counting takes at most half the budget
            per_worker = budget / 2 / (cfg.workers + 1)
            unit = int(min(unit, max(4 * 10**6, (per_worker - WORKER_BYTES) / WORKER_BYTES_PER_UNIT_BYTE)))
    if budget is None:
        return Plan(None, unit, cfg.workers, None)
    counting = RUNTIME_BYTES + cfg.workers * (WORKER_BYTES + WORKER_BYTES_PER_UNIT_BYTE * unit) + (cfg.workers + 1) * 2 * unit
    train_bytes = budget - RUNTIME_BYTES - 64 * 10**6  # the feed's buffer of strings
    if counting > budget or train_bytes < 64 * 10**6:
        raise ConfigError(
            f"max_memory={cfg.max_memory}: too small for {cfg.workers} counting workers with "
            f"{unit / 1e6:.0f} MB units (about {counting / 1e9:.2f} GB) plus training; "
            "give more memory, fewer workers or a smaller unit_bytes"
        )
    return Plan(budget, unit, cfg.workers, train_bytes)


# ---------------------------------------------------------------- counting


def count_chunked(texts: Iterable[str], kind: str) -> Counter:
    """Byte-level pre-token counts of ``texts``, pre-tokenizing each distinct chunk once.

    Equal to counting ``build_pre_tokenizer(kind).pre_tokenize_str`` over each text
    (tested on real text and random strings).

    >>> sorted(count_chunked(["a a 12345", "a"], "trinity").items())
    [('345', 1), ('a', 2), ('Ġ12', 1), ('Ġa', 1)]
    """
    chunks: Counter = Counter()
    for text in texts:
        chunks.update(_CHUNK.split(text))
    chunks.pop("", None)
    pre = _pre_tokenizer(kind)
    out: Counter = Counter()
    for chunk, n in chunks.items():
        for piece, _ in pre.pre_tokenize_str(chunk):
            out[piece] += n
    return out


def _write_atomic(path: Path, write) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())


def count_unit(texts: list[str], kind: str, run_path: str, meta: dict) -> dict:
    """Count one unit (in a worker) and write its sorted run, then its marker."""
    started = time.perf_counter()
    counts = count_chunked(texts, kind)
    items = sorted(counts.items())
    run = Path(run_path)
    _write_atomic(run, lambda f: f.writelines(f"{p}\t{c}\n" for p, c in items))
    meta = {**meta, "distinct": len(items), "pieces": sum(counts.values()),
            "seconds": round(time.perf_counter() - started, 3)}
    _write_atomic(run.with_suffix(".json"), lambda f: json.dump(meta, f))
    return meta


def _units(texts: Iterable[str], unit_chars: int) -> Iterator[tuple[int, list[str], dict]]:
    buf: list[str] = []
    size = nbytes = 0
    i = 0
    for t in texts:
        buf.append(t)
        size += len(t)
        nbytes += len(t.encode("utf-8", "surrogatepass"))
        if size >= unit_chars:
            yield i, buf, _unit_meta(i, buf, size, nbytes)
            buf, size, nbytes, i = [], 0, 0, i + 1
    if buf:
        yield i, buf, _unit_meta(i, buf, size, nbytes)


def _unit_meta(i: int, texts: list[str], chars: int, nbytes: int) -> dict:
    # What a resumed run re-reads must be this very unit: same documents, same text.
    head = xxhash.xxh64_hexdigest(texts[0].encode("utf-8", "surrogatepass"))
    tail = xxhash.xxh64_hexdigest(texts[-1].encode("utf-8", "surrogatepass"))
    return {"unit": i, "docs": len(texts), "chars": chars, "bytes": nbytes, "head": head, "tail": tail}


def _done(runs: Path, meta: dict) -> bool:
    marker = runs / f"u{meta['unit']:06d}.json"
    if not marker.is_file() or not (runs / f"u{meta['unit']:06d}.tsv").is_file():
        return False
    try:
        saved = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    return all(saved.get(k) == meta[k] for k in ("docs", "chars", "bytes", "head", "tail"))


def fingerprint(cfg: TrainConfig, unit_bytes: int) -> str:
    """Hash of everything that decides the counts (inputs, sampling, rule, units)."""
    keys = ("inputs", "text_field", "lang_field", "source_field", "id_field", "lang_weights", "source_weights",
            "max_bytes", "holdout_fraction", "seed", "pretokenizer")
    blob = json.dumps({"format": FORMAT, "unit_bytes": unit_bytes, **cfg.model_dump(include=set(keys))},
                      sort_keys=True)
    return xxhash.xxh64_hexdigest(blob.encode())


def _open_work_dir(work: Path, fp: str) -> Path:
    runs = work / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    state = work / "state.json"
    if state.exists():
        saved = json.loads(state.read_text()).get("fingerprint")
        if saved != fp:
            raise ConfigError(
                f"{work}: holds counts of another corpus or config (fingerprint {saved}, this run {fp}); "
                "delete it or give another work_dir"
            )
    else:
        _write_atomic(state, lambda f: json.dump({"format": FORMAT, "fingerprint": fp}, f))
    return runs


class _RayPool:
    """The few ``ProcessPoolExecutor`` calls :func:`count_to_runs` uses, as Ray tasks on
    the current cluster (started locally for this call if there is none). The run
    files are written by the tasks: on several machines ``work_dir`` must be a
    shared file system."""

    def __init__(self, workers: int):
        import ray

        self.ray = ray
        from common.cluster import connect_ray

        self.started_here = connect_ray(num_cpus=workers)
        self.task = ray.remote(count_unit)

    def submit(self, fn, *args):
        return self.task.remote(*args)

    def wait_one(self, pending: set) -> tuple[list, set]:
        done, rest = self.ray.wait(list(pending), num_returns=1)
        return [self.ray.get(r) for r in done], set(rest)

    def close(self) -> None:
        if self.started_here:
            self.ray.shutdown()


class _ProcessPool:
    def __init__(self, workers: int):
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        # spawn: a forked worker would inherit the driver's heap (and Ray's or the
        # trainer's threads); a worker that dies raises BrokenProcessPool, never hangs.
        self.pool = ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"))

    def submit(self, fn, *args):
        return self.pool.submit(fn, *args)

    def wait_one(self, pending: set) -> tuple[list, set]:
        from concurrent.futures import FIRST_COMPLETED, wait

        done, rest = wait(pending, return_when=FIRST_COMPLETED)
        return [f.result() for f in done], rest

    def close(self) -> None:
        self.pool.shutdown()


def count_to_runs(texts: Iterable[str], kind: str, runs: Path, p: Plan, progress: bool,
                  backend: str = "processes") -> dict:
    """Phase 1: every unit counted into a sorted run file (resuming finished ones)."""
    from tqdm import tqdm

    counted = resumed = 0
    bar = tqdm(unit="B", unit_scale=True, desc="1/4 count", disable=not progress)
    started = time.perf_counter()

    def finish(meta: dict) -> None:
        nonlocal counted
        counted += 1
        bar.update(meta["bytes"])
        bar.set_postfix(units=counted + resumed, resumed=resumed)

    pool = _RayPool(p.workers) if backend == "ray" else _ProcessPool(p.workers)
    try:
        pending: set = set()
        for i, unit, meta in _units(texts, p.unit_bytes):
            if _done(runs, meta):
                resumed += 1
                bar.update(meta["bytes"])
                bar.set_postfix(units=counted + resumed, resumed=resumed)
                continue
            pending.add(pool.submit(count_unit, unit, kind, str(runs / f"u{i:06d}.tsv"), meta))
            del unit
            while len(pending) > p.workers:  # bounded window: at most workers + 1 units in flight
                done, pending = pool.wait_one(pending)
                for meta_done in done:
                    finish(meta_done)
        while pending:
            done, pending = pool.wait_one(pending)
            for meta_done in done:
                finish(meta_done)
    finally:
        pool.close()
    bar.close()
    return {"units": counted + resumed, "units_counted": counted, "units_resumed": resumed,
            "count_s": round(time.perf_counter() - started, 2)}


# ---------------------------------------------------------------- merging


def _read_run(path: Path) -> Iterator[tuple[str, int]]:
    with open(path, encoding="utf-8", buffering=1 << 16) as f:
        for line in f:
            piece, _, count = line.rstrip("\n").rpartition("\t")
            yield piece, int(count)


def merge_runs(runs: list[Path], out: Path, progress: bool) -> dict:
    """Phase 2: k-way merge of sorted runs into one sorted, summed ``out`` file.

    Returns the histogram ``{count: [pieces, characters]}`` and totals.
    """
    from tqdm import tqdm

    hist: dict[int, list[int]] = {}
    distinct = mass = 0
    total = sum(r.stat().st_size for r in runs)
    bar = tqdm(total=total, unit="B", unit_scale=True, desc="2/4 merge", disable=not progress)
    started = time.perf_counter()
    seen = 0
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "w", encoding="utf-8", newline="\n", buffering=1 << 20) as f:
        approx = 0
        merged = heapq.merge(*(_read_run(r) for r in runs))
        for piece, group in itertools.groupby(merged, key=operator.itemgetter(0)):
            acc = 0
            for _, count in group:
                acc += count
                seen += 1
                approx += len(piece) + 4  # about the line's bytes, for the bar
            f.write(f"{piece}\t{acc}\n")
            h = hist.setdefault(acc, [0, 0])
            h[0] += 1
            h[1] += len(piece)
            distinct += 1
            mass += acc
            if approx >= 1 << 20:
                bar.update(min(approx, total - bar.n))
                approx = 0
    os.replace(tmp, out)
    bar.update(total - bar.n)
    bar.close()
    return {"hist": hist, "distinct": distinct, "mass": mass, "run_lines": seen,
            "merge_s": round(time.perf_counter() - started, 2)}


# ---------------------------------------------------------------- pruning


def train_cost(pieces: int, chars: int) -> int:
    """Estimated trainer memory for ``pieces`` distinct pieces of ``chars`` characters."""
    return TRAIN_BYTES_PER_PIECE * pieces + TRAIN_BYTES_PER_CHAR * chars


def choose_kept(hist: dict[int, list[int]], min_count: int, max_words: int | None,
                train_bytes: int | None) -> tuple[int, int]:
    """The threshold ``(count, ties)``: keep every piece seen more than ``count`` times
    and the first ``ties`` pieces (in key order) seen exactly ``count`` times.

    The most frequent pieces are kept first, while they fit ``max_words`` and the
    estimated trainer memory ``train_bytes``; nothing below ``min_count``.

    >>> choose_kept({10: [2, 8], 5: [3, 9], 1: [100, 300]}, 2, None, None)
    (5, 3)
    >>> choose_kept({10: [2, 8], 5: [3, 9], 1: [100, 300]}, 1, 4, None)
    (5, 2)
    """
    n = chars = 0
    last = None
    for c in sorted(hist, reverse=True):
        if c < min_count:
            break
        ln, lchars = hist[c]
        take = ln
        if max_words is not None:
            take = min(take, max_words - n)
        if train_bytes is not None:
            per = train_cost(1, 0) + TRAIN_BYTES_PER_CHAR * lchars / ln
            take = min(take, int((train_bytes - train_cost(n, chars)) // per))
        take = max(take, 0)
        if take < ln:
            return (c, take) if take > 0 or last is None else (last[0], last[1])
        n, chars, last = n + ln, chars + lchars, (c, ln)
    return last if last is not None else (1 << 62, 0)


def kept_pieces(merged: Path, threshold: tuple[int, int]) -> Iterator[tuple[str, int]]:
    """Phase 3 while streaming ``merged``: the pieces :func:`choose_kept` keeps."""
    count, ties = threshold
    for piece, c in _read_run(merged):
        if c > count:
            yield piece, c
        elif c == count and ties > 0:
            ties -= 1
            yield piece, c


def kept_summary(hist: dict[int, list[int]], threshold: tuple[int, int]) -> dict:
    count, ties = threshold
    pieces = sum(v[0] for c, v in hist.items() if c > count) + ties
    mass = sum(c * v[0] for c, v in hist.items() if c > count) + count * ties
    chars = sum(v[1] for c, v in hist.items() if c > count)
    if ties and count in hist:  # the tied pieces' share of their level's characters
        chars += round(hist[count][1] * ties / hist[count][0])
    return {"kept_distinct": pieces, "kept_mass": mass, "kept_chars_approx": chars}


# ---------------------------------------------------------------- training


def _fed(items: Iterable[tuple[str, int]], bar) -> Iterator[tuple[str, int]]:
    for piece, c in items:
        bar.update(c)
        yield piece, c


def train_sharded(cfg: TrainConfig, texts: Iterable[str], trainer, *, out_dir: str | Path | None,
                  progress: bool) -> tuple[object, dict]:
    """Phases 1-4 (module docstring); returns the raw trained Tokenizer and the report."""
    from tqdm import tqdm
    from tokenizers import Tokenizer, models, pre_tokenizers

    p = plan(cfg)
    fp = fingerprint(cfg, p.unit_bytes)
    tmp_root = None
    if cfg.work_dir is not None:
        work = Path(cfg.work_dir)
    elif out_dir is not None:
        work = Path(out_dir) / "_counts"
    else:
        tmp_root = work = Path(tempfile.mkdtemp(prefix="trinity-counts-"))
    sampler = PeakSampler(interval=0.25).start()
    try:
        runs = _open_work_dir(work, fp)
        report: dict = {"plan": p.as_dict(), "work_dir": str(work)}
        report.update(count_to_runs(texts, cfg.pretokenizer, runs, p, progress, cfg.backend))
        files = sorted(runs.glob("u*.tsv"))[: report["units"]]
        merged = merge_runs(files, work / "merged.tsv", progress)
        hist = merged.pop("hist")
        report.update(merged)
        threshold = choose_kept(hist, cfg.min_count, cfg.max_words, p.train_bytes)
        kept = kept_summary(hist, threshold)
        kept["kept_mass_fraction"] = round(kept["kept_mass"] / merged["mass"], 6) if merged["mass"] else 1.0
        kept["kept_distinct_fraction"] = round(kept["kept_distinct"] / merged["distinct"], 6) if merged["distinct"] else 1.0
        kept["threshold_count"], kept["threshold_ties"] = threshold
        kept["estimated_train_mb"] = round(train_cost(kept["kept_distinct"], kept["kept_chars_approx"]) / 1e6, 1)
        report.update(kept)
        log.info("kept %d of %d distinct pre-tokens (%.2f%% of the count mass)", kept["kept_distinct"],
                 merged["distinct"], 100 * kept["kept_mass_fraction"])
        started = time.perf_counter()
        raw = Tokenizer(models.BPE())
        raw.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
        with tqdm(total=kept["kept_mass"], unit="piece", unit_scale=True, desc="3/4 feed",
                  disable=not progress) as bar:
            # 256 KB strings: the binding buffers 256 of them before the trainer counts.
            chunks = repeat_counts(_fed(kept_pieces(work / "merged.tsv", threshold), bar), chunk_chars=1 << 18)
            if progress:
                log.info("4/4 merges: the `tokenizers` trainer's own progress bars follow")
            raw.train_from_iterator(chunks, trainer, length=None)
        report["train_s"] = round(time.perf_counter() - started, 2)
    finally:
        peak = sampler.stop()
    report["peak_rss_tree_mb"] = round(peak / 1e6, 1)
    if p.budget is not None:
        report["max_memory_mb"] = round(p.budget / 1e6, 1)
        report["within_budget"] = peak <= p.budget
        if peak > p.budget:
            log.warning("peak memory %.2f GB went over max_memory %.2f GB", peak / 1e9, p.budget / 1e9)
    if tmp_root is not None:
        shutil.rmtree(tmp_root, ignore_errors=True)
    elif not cfg.keep_counts:
        shutil.rmtree(work, ignore_errors=True)
    return raw, report
