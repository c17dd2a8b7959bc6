"""Training from pre-token counts, for corpora larger than memory.

The `tokenizers` BPE trainer keeps one entry per distinct pre-token plus, while
merging, the pair index over all of them; its memory grows with the distinct
pre-tokens, which keep growing with the corpus (Heaps' law), most of them seen
once or twice. This route bounds that:

1. workers (a local process pool, or Ray tasks on a cluster) pre-tokenize batches
   of text with the very pre-tokenizer the tokenizer will use and count the
   byte-level pieces;
2. the driver merges the counts; with ``max_words`` set it prunes to the most
   frequent pieces whenever the table passes 2x that size (a lossy "heavy
   hitters" sketch: a pruned piece can come back later with a lower count);
3. pieces below ``min_count`` are dropped (the rare tail);
4. the trainer learns merges from the counts.

`tokenizers` has no "train from counts" entry point (huggingface/tokenizers#760),
so step 4 feeds each counted piece as many times as it was seen, separated by a
space, through a trainer whose pre-tokenizer only splits on whitespace. The
pieces are already byte-level characters, none of which is whitespace, so the
trainer sees exactly the counted pieces. Feeding costs time proportional to the
kept corpus, but never holds more than one piece's repeats in memory at once.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Iterable, Iterator

log = logging.getLogger(__name__)

_PRE = {}


def _pre_tokenizer(kind: str):
    if kind not in _PRE:
        from .pretokenize import build_pre_tokenizer

        _PRE[kind] = build_pre_tokenizer(kind)
    return _PRE[kind]


def count_batch(texts: list[str], kind: str) -> dict[str, int]:
    """Byte-level pre-token counts of one batch of texts (runs in a worker)."""
    pre = _pre_tokenizer(kind)
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(piece for piece, _ in pre.pre_tokenize_str(text))
    return dict(counts)


def _batches(texts: Iterable[str], batch_bytes: int) -> Iterator[list[str]]:
    batch: list[str] = []
    size = 0
    for text in texts:
        batch.append(text)
        size += len(text)
        if size >= batch_bytes:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def _prune(counts: Counter, keep: int) -> Counter:
    return Counter(dict(counts.most_common(keep)))


def count_pretokens(
    texts: Iterable[str],
    kind: str,
    *,
    workers: int = 2,
    backend: str = "processes",
    batch_bytes: int = 1 << 21,
    min_count: int = 1,
    max_words: int | None = None,
    stats: dict | None = None,
) -> Counter:
    """Count byte-level pre-tokens of ``texts`` in parallel; prune per the limits.

    Args:
        texts: the training text.
        kind: pre-tokenizer kind (see :func:`tokenizer.pretokenize.build_pre_tokenizer`).
        workers: parallel workers.
        backend: ``processes`` or ``ray`` (uses the current Ray cluster; without
            one, starts a local one and shuts it down at the end).
        min_count: drop pieces seen fewer times at the end.
        max_words: keep at most this many distinct pieces (pruned while counting).
        stats: filled with ``distinct_before_prune``, ``distinct`` and ``pieces``.

    >>> c = count_pretokens(["a a 12345"], "trinity", workers=1)
    >>> sorted(c.items())
    [('345', 1), ('a', 1), ('Ġ12', 1), ('Ġa', 1)]
    """
    total: Counter[str] = Counter()
    peak_distinct = 0
    batches = _batches(texts, batch_bytes)

    def merge(part: dict[str, int]) -> None:
        nonlocal total, peak_distinct
        total.update(part)
        peak_distinct = max(peak_distinct, len(total))
        if max_words is not None and len(total) > 2 * max_words:
            total = _prune(total, max_words)

    if workers == 1:
        for b in batches:
            merge(count_batch(b, kind))
    elif backend == "ray":
        _count_on_ray(batches, kind, workers, merge)
    else:
        _count_in_processes(batches, kind, workers, merge)
    before = len(total)
    if max_words is not None and len(total) > max_words:
        total = _prune(total, max_words)
    if min_count > 1:
        total = Counter({w: c for w, c in total.items() if c >= min_count})
    if stats is not None:
        stats.update(
            distinct_peak=peak_distinct,
            distinct_before_prune=before,
            distinct=len(total),
            pieces=sum(total.values()),
        )
    log.info("pre-token counts: %d distinct (%d before pruning)", len(total), before)
    return total


def _count_in_processes(batches, kind: str, workers: int, merge) -> None:
    # A bounded window of tasks keeps at most 2 x workers batches of text in flight.
    # concurrent.futures (not multiprocessing.Pool) so a worker that dies raises
    # BrokenProcessPool instead of hanging the run.
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool:
        pending = set()
        for b in batches:
            pending.add(pool.submit(count_batch, b, kind))
            if len(pending) >= 2 * workers:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for f in done:
                    merge(f.result())
        for f in pending:
            merge(f.result())


def _count_on_ray(batches, kind: str, workers: int, merge) -> None:
    import ray

    from common.cluster import connect_ray

    # not yet connected: RAY_ADDRESS's cluster, else a local one, for this call only
    started_here = connect_ray(num_cpus=workers)
    try:
        task = ray.remote(count_batch)
        pending = []
        for b in batches:
            pending.append(task.remote(b, kind))
            if len(pending) >= 2 * workers:
                done, pending = ray.wait(pending, num_returns=1)
                for ref in done:
                    merge(ray.get(ref))
        for ref in pending:
            merge(ray.get(ref))
    finally:
        if started_here:
            ray.shutdown()


def repeat_counts(counts, chunk_chars: int = 1 << 20) -> Iterator[str]:
    """Strings that make a whitespace-splitting trainer see each piece ``count``
    times, packed into ~``chunk_chars`` strings (one Python string per piece would
    make the per-string overhead dominate). ``counts``: a dict, or an iterable of
    ``(piece, count)`` pairs (streamed, never held)."""
    buf: list[str] = []
    size = 0
    for piece, n in counts.items() if hasattr(counts, "items") else counts:
        unit = piece + " "
        while n > 0:
            k = min(n, max(1, chunk_chars // len(unit)))
            buf.append(unit * k)
            size += k * len(unit)
            n -= k
            if size >= chunk_chars:
                yield "".join(buf)
                buf, size = [], 0
    if buf:
        yield "".join(buf)


def train_bpe_from_counts(counts: dict[str, int], trainer):
    """Train a BPE model on pre-counted byte-level pieces; returns the `tokenizers`
    Tokenizer holding the raw trained model."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.train_from_iterator(repeat_counts(counts), trainer, length=None)
    return tok
