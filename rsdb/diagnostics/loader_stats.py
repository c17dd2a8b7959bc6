"""Model-free statistics of loader microbatches: see BH causes before training.

A microbatch whose tokens mostly come from one document is unlike the others of
its step (its loss is that document's loss), which is what makes batch
heterogeneity large. These statistics need only a batch dict in the RSDB format
(numpy arrays ``tokens``, ``loss_mask``, ``position_ids``, ``doc_ids``,
``source_ids``, each shaped ``(B, L+1)``), so any loader producing that format can
be compared: RSDB against sequential packing, or two buffer sizes.

All statistics are over the *label* side (``[:, 1:]``) where ``loss_mask`` is
True, i.e. exactly the tokens the loss is computed on.

Per microbatch:

- ``distinct_docs``: documents contributing at least one token (a document is a
  ``(source_ids, doc_ids)`` pair, as RSDB numbers documents within their source).
- ``max_doc_share``: share of the tokens from the single largest document
  (1.0 = the whole microbatch is one document).
- ``source_tokens`` / ``source_entropy``: source mix and its entropy in bits.
- ``mean_doc_position``: mean ``position_ids`` (how deep into documents the
  tokens sit; deep positions are usually easier to predict).
- ``token_entropy``: entropy in bits of the microbatch's unigram token
  histogram; a repetitive document gives a low value.

Per step (``micro_per_step`` consecutive microbatches), ``entropy_heterogeneity``
is ``max - mean`` of ``token_entropy`` over the step's microbatches: a
model-free analogue of BH.

>>> import numpy as np
>>> B, L = 2, 4
>>> batch = {"tokens": np.arange(10, dtype=np.int32).reshape(B, L + 1),
...          "loss_mask": np.ones((B, L + 1), bool),
...          "position_ids": np.tile(np.arange(L + 1, dtype=np.int32), (B, 1)),
...          "doc_ids": np.array([[7] * 5, [8] * 5], dtype=np.int64),
...          "source_ids": np.zeros((B, L + 1), np.int32)}
>>> s = microbatch_stats(batch)
>>> s.distinct_docs, s.max_doc_share, s.source_entropy
(2, 0.5, 0.0)
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from ..errors import LoaderError

log = logging.getLogger(__name__)

REQUIRED_KEYS = ("tokens", "loss_mask", "position_ids", "doc_ids", "source_ids")
METRICS = ("distinct_docs", "max_doc_share", "source_entropy", "mean_doc_position", "token_entropy")
# A microbatch with more than half of its tokens from one document is called "dominated".
DOMINATED_SHARE = 0.5


class BatchFormatError(LoaderError):
    """A batch dict does not follow the RSDB batch format (names the key and what is wrong)."""


@dataclass
class MicrobatchStats:
    """Statistics of one microbatch (see the module docstring)."""

    tokens: int
    padding_frac: float
    distinct_docs: int
    max_doc_share: float
    source_tokens: list[int]
    source_entropy: float
    mean_doc_position: float
    token_entropy: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def entropy_bits(counts: np.ndarray) -> float:
    """Shannon entropy in bits of a histogram (zeros ignored; 0.0 for an empty one).

    >>> entropy_bits(np.array([1, 1, 1, 1]))
    2.0
    """
    c = np.asarray(counts, dtype=np.float64)
    c = c[c > 0]
    if c.size == 0:
        return 0.0
    p = c / c.sum()
    return float(max(0.0, -(p * np.log2(p)).sum()))


def _check_batch(batch: Mapping[str, Any]) -> tuple[int, ...]:
    if not isinstance(batch, Mapping):
        raise BatchFormatError(f"a batch must be a dict of arrays, got {type(batch).__name__}")
    missing = [k for k in REQUIRED_KEYS if k not in batch]
    if missing:
        raise BatchFormatError(f"batch is missing key(s) {missing}; it has {sorted(batch)}")
    shape = np.shape(batch["tokens"])
    if len(shape) != 2 or shape[1] < 2:
        raise BatchFormatError(f"batch['tokens'] must be (B, L+1) with L >= 1, got shape {shape}")
    for k in REQUIRED_KEYS[1:]:
        if np.shape(batch[k]) != shape:
            raise BatchFormatError(f"batch[{k!r}] has shape {np.shape(batch[k])}, expected {shape} like 'tokens'")
    return shape


def microbatch_stats(batch: Mapping[str, Any], *, num_sources: int | None = None) -> MicrobatchStats:
    """Statistics of one microbatch (one loader batch).

    Args:
        batch: a batch dict in the RSDB format (numpy arrays).
        num_sources: length of ``source_tokens`` (default: max source id + 1).

    Raises:
        BatchFormatError: a key is missing or shapes disagree.
    """
    _check_batch(batch)
    mask = np.asarray(batch["loss_mask"], dtype=bool)[:, 1:]
    total = mask.size
    n = int(mask.sum())
    docs = np.asarray(batch["doc_ids"])[:, 1:][mask]
    srcs = np.asarray(batch["source_ids"])[:, 1:][mask].astype(np.int64)
    pos = np.asarray(batch["position_ids"])[:, 1:][mask]
    toks = np.asarray(batch["tokens"])[:, 1:][mask]
    if srcs.size and srcs.min() < 0:
        raise BatchFormatError(f"batch['source_ids'] has a negative id {int(srcs.min())}")
    nsrc = num_sources if num_sources is not None else (int(srcs.max()) + 1 if srcs.size else 0)
    if srcs.size and srcs.max() >= nsrc:
        raise BatchFormatError(f"batch['source_ids'] has id {int(srcs.max())} but only {nsrc} sources are known")
    source_tokens = np.bincount(srcs, minlength=nsrc) if nsrc else np.zeros(0, np.int64)
    if n:
        # a document is a (source id, doc id) pair: RSDB numbers documents within their source
        _, doc_counts = np.unique(np.stack([srcs, docs.astype(np.int64)]), axis=1, return_counts=True)
        _, tok_counts = np.unique(toks, return_counts=True)
        distinct, max_share = int(doc_counts.size), float(doc_counts.max() / n)
        mean_pos, tok_h = float(pos.astype(np.float64).mean()), entropy_bits(tok_counts)
    else:
        distinct, max_share, mean_pos, tok_h = 0, 0.0, 0.0, 0.0
    return MicrobatchStats(
        tokens=n,
        padding_frac=float(1.0 - n / total) if total else 0.0,
        distinct_docs=distinct,
        max_doc_share=max_share,
        source_tokens=[int(x) for x in source_tokens],
        source_entropy=entropy_bits(source_tokens),
        mean_doc_position=mean_pos,
        token_entropy=tok_h,
    )


def _dist(values: Sequence[float]) -> dict[str, float]:
    a = np.asarray(values, dtype=np.float64)
    if a.size == 0:
        return {}
    p5, p50, p95 = np.percentile(a, [5, 50, 95])
    return {"mean": float(a.mean()), "p5": float(p5), "p50": float(p50), "p95": float(p95),
            "min": float(a.min()), "max": float(a.max())}


class LoaderStats:
    """Collect :class:`MicrobatchStats` over a stream and summarize them.

    Args:
        micro_per_step: microbatches per optimizer step (gradient accumulation);
            consecutive groups of this many microbatches form a step.
        source_names: names for source ids (``loader.source_names``).

    >>> import numpy as np
    >>> ls = LoaderStats(micro_per_step=2, source_names=["a"])
    >>> b = {"tokens": np.zeros((1, 3), np.int32), "loss_mask": np.ones((1, 3), bool),
    ...      "position_ids": np.zeros((1, 3), np.int32), "doc_ids": np.zeros((1, 3), np.int64),
    ...      "source_ids": np.zeros((1, 3), np.int32)}
    >>> _ = ls.add(b); _ = ls.add(b)
    >>> ls.summary()["microbatches"], ls.summary()["steps"]
    (2, 1)
    """

    def __init__(self, micro_per_step: int = 1, source_names: Sequence[str] | None = None):
        if micro_per_step < 1:
            raise ValueError(f"micro_per_step must be >= 1, got {micro_per_step}")
        self.micro_per_step = int(micro_per_step)
        self.source_names = list(source_names) if source_names is not None else None
        self.micro: list[MicrobatchStats] = []

    def add(self, batch: Mapping[str, Any]) -> MicrobatchStats:
        """Compute and keep the statistics of one microbatch."""
        nsrc = len(self.source_names) if self.source_names is not None else None
        s = microbatch_stats(batch, num_sources=nsrc)
        self.micro.append(s)
        return s

    def collect(self, batches: Iterable[Mapping[str, Any]], steps: int, *, progress: bool = False) -> "LoaderStats":
        """Consume ``steps * micro_per_step`` batches (fewer if the stream ends)."""
        want = steps * self.micro_per_step
        it = iter(batches)
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=want, desc="microbatches", unit="mb", leave=False)
        for _ in range(want):
            try:
                batch = next(it)
            except StopIteration:
                log.info("stream ended after %d microbatches (asked for %d)", len(self.micro), want)
                break
            self.add(batch)
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
        return self

    def step_stats(self) -> list[dict[str, float]]:
        """Per complete step: spread of the microbatch statistics across the step."""
        out = []
        m = self.micro_per_step
        for i in range(0, len(self.micro) - m + 1, m):
            group = self.micro[i:i + m]
            h = np.array([g.token_entropy for g in group])
            share = np.array([g.max_doc_share for g in group])
            out.append({
                "entropy_heterogeneity": float(h.max() - h.mean()),
                "max_doc_share_max": float(share.max()),
                "dominated_micro": int((share > DOMINATED_SHARE).sum()),
            })
        return out

    def values(self, metric: str) -> list[float]:
        """One metric (a name in ``METRICS``) for every microbatch."""
        if metric not in METRICS:
            raise ValueError(f"unknown metric {metric!r}; choose from {METRICS}")
        return [getattr(s, metric) for s in self.micro]

    def source_shares(self) -> dict[str, float]:
        """Token share of each source over all microbatches."""
        if not self.micro:
            return {}
        width = max(len(s.source_tokens) for s in self.micro)
        tot = np.zeros(width, np.int64)
        for s in self.micro:
            tot[: len(s.source_tokens)] += s.source_tokens
        names = self.source_names or [str(i) for i in range(width)]
        denom = max(1, int(tot.sum()))
        return {names[i] if i < len(names) else str(i): float(tot[i] / denom) for i in range(width)}

    def summary(self) -> dict[str, Any]:
        """Distributions (mean/p5/p50/p95/min/max) of each metric, plus step-level spreads."""
        steps = self.step_stats()
        share = np.array(self.values("max_doc_share")) if self.micro else np.zeros(0)
        out: dict[str, Any] = {
            "microbatches": len(self.micro),
            "steps": len(steps),
            "micro_per_step": self.micro_per_step,
            "tokens": int(sum(s.tokens for s in self.micro)),
            "padding_frac": float(np.mean([s.padding_frac for s in self.micro])) if self.micro else 0.0,
            "dominated_frac": float((share > DOMINATED_SHARE).mean()) if share.size else 0.0,
            "source_shares": self.source_shares(),
        }
        for metric in METRICS:
            out[metric] = _dist(self.values(metric))
        out["entropy_heterogeneity"] = _dist([s["entropy_heterogeneity"] for s in steps])
        return out
