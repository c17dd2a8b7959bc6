"""PNG plots for the BH tracker and loader statistics (matplotlib, Agg backend).

matplotlib is imported inside each function so ``import rsdb.diagnostics`` stays
light, and the non-interactive Agg backend is forced so plotting works on
headless machines.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping, Sequence, Union

import numpy as np

from .loader_stats import LoaderStats
from .tracker import RunLog, StepRecord, read_run

log = logging.getLogger(__name__)

# Fixed colours per well-known run label so the two packings look the same in every figure.
_COLOURS = {"sequential": "#d62728", "rsdb": "#1f77b4"}
_CYCLE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"]

RunLike = Union[str, Path, RunLog, Sequence[StepRecord]]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _colour(label: str, i: int) -> str:
    return _COLOURS.get(label, _CYCLE[i % len(_CYCLE)])


def _records(run: RunLike) -> list[StepRecord]:
    if isinstance(run, (str, Path)):
        return read_run(run).records
    if isinstance(run, RunLog):
        return run.records
    return list(run)


def _rolling(x: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over up to ``window`` points (NaN-aware)."""
    out = np.empty_like(x, dtype=np.float64)
    for i in range(len(x)):
        seg = x[max(0, i - window + 1): i + 1]
        seg = seg[np.isfinite(seg)]
        out[i] = seg.mean() if seg.size else np.nan
    return out


def plot_runs(runs: Mapping[str, RunLike], out_png: str | Path, *, title: str | None = None,
              smooth: int | None = None) -> Path:
    """Loss per step with spikes marked (top) and BH per step (bottom), runs overlaid.

    Args:
        runs: label -> run (a JSONL path, a :class:`RunLog` or a list of step records).
        out_png: where to write the PNG (parent dirs are created).
        title: figure title.
        smooth: trailing window for the bold BH line (default: steps // 20, at least 5).

    Steps whose ``extra`` has ``eval_loss`` are drawn as hollow markers on the loss panel.
    """
    plt = _pyplot()
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig, (ax_loss, ax_bh) = plt.subplots(2, 1, figsize=(10, 7.5), sharex=True,
                                         gridspec_kw={"height_ratios": [1.2, 1]})
    loaded = {label: _records(run) for label, run in runs.items()}
    w = smooth or max(5, max((len(r) for r in loaded.values()), default=0) // 20)  # one window for all runs
    for i, (label, recs) in enumerate(loaded.items()):
        if not recs:
            log.warning("run %r has no steps; skipped in %s", label, out_png)
            continue
        c = _colour(label, i)
        steps = np.array([r.step for r in recs])
        loss = np.array([r.loss for r in recs], dtype=np.float64)
        bh = np.array([r.bh for r in recs], dtype=np.float64)
        lo = np.array([r.loss_min for r in recs], dtype=np.float64)
        hi = np.array([r.loss_max for r in recs], dtype=np.float64)
        ax_loss.fill_between(steps, lo, hi, color=c, alpha=0.15, linewidth=0)
        ax_loss.plot(steps, loss, color=c, lw=1.2, label=f"{label}: step loss (band: microbatch min-max)")
        spikes = np.array([r.spike for r in recs])
        if spikes.any():
            ax_loss.scatter(steps[spikes], loss[spikes], marker="x", s=60, color="black", zorder=5,
                            label=f"{label}: loss spikes ({int(spikes.sum())})")
        ev = [(r.step, r.extra["eval_loss"]) for r in recs if isinstance(r.extra, dict) and "eval_loss" in r.extra]
        if ev:
            es, el = zip(*ev)
            ax_loss.plot(es, el, "o--", mfc="white", color=c, lw=1, ms=5, label=f"{label}: held-out eval loss")
        ax_bh.plot(steps, bh, color=c, lw=0.6, alpha=0.35)
        ax_bh.plot(steps, _rolling(bh, w), color=c, lw=2,
                   label=f"{label}: BH (mean {np.nanmean(bh):.3f}, max {np.nanmax(bh):.3f}; bold = {w}-step mean)")
    ax_loss.set_ylabel("loss (nats/token)")
    ax_loss.legend(fontsize=8, loc="upper right")
    ax_loss.grid(alpha=0.3)
    ax_bh.set_ylabel("BH = max - mean microbatch loss")
    ax_bh.set_xlabel("optimizer step")
    ax_bh.set_ylim(bottom=0)
    ax_bh.legend(fontsize=8, loc="upper right")
    ax_bh.grid(alpha=0.3)
    fig.suptitle(title or "Batch heterogeneity")
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return out_png


def plot_loader_stats(stats: Mapping[str, LoaderStats], out_png: str | Path, *, title: str | None = None) -> Path:
    """Histograms of the per-microbatch loader statistics, one colour per loader.

    Args:
        stats: label (e.g. ``"rsdb"``, ``"sequential"``) -> collected :class:`LoaderStats`.
        out_png: where to write the PNG.
        title: figure title.
    """
    plt = _pyplot()
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    panels = [
        ("distinct_docs", "distinct documents per microbatch", None),
        ("max_doc_share", "largest single-document token share", (0.0, 1.0)),
        ("source_entropy", "source-mix entropy (bits)", None),
        ("mean_doc_position", "mean position_ids (position in document chunk)", None),
        ("token_entropy", "unigram token entropy (bits)", None),
    ]
    fig, axes = plt.subplots(2, 3, figsize=(13, 7.5))
    flat = axes.ravel()
    for ax, (metric, xlabel, rng) in zip(flat, panels):
        allv = np.concatenate([np.asarray(s.values(metric), dtype=np.float64) for s in stats.values()] or [[0.0]])
        if rng is None:
            lo, hi = (float(allv.min()), float(allv.max())) if allv.size else (0.0, 1.0)
            if hi <= lo:
                hi = lo + 1.0
            rng = (lo, hi)
        bins = np.linspace(rng[0], rng[1], 31)
        for i, (label, s) in enumerate(stats.items()):
            v = np.asarray(s.values(metric), dtype=np.float64)
            if v.size == 0:
                continue
            ax.hist(v, bins=bins, color=_colour(label, i), alpha=0.5,
                    label=f"{label} (mean {v.mean():.3g})")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("microbatches")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    # Last panel: source mix per loader as grouped bars.
    ax = flat[-1]
    labels = list(stats)
    names = sorted({n for s in stats.values() for n in s.source_shares()})
    x = np.arange(len(names))
    width = 0.8 / max(1, len(labels))
    for i, label in enumerate(labels):
        shares = stats[label].source_shares()
        ax.bar(x + i * width, [shares.get(n, 0.0) for n in names], width, color=_colour(label, i), alpha=0.7,
               label=label)
    ax.set_xticks(x + width * (len(labels) - 1) / 2)
    ax.set_xticklabels(names, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("token share")
    ax.set_title("source mix (all microbatches)", fontsize=9)
    ax.legend(fontsize=8)
    fig.suptitle(title or "Loader microbatch statistics")
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return out_png


def describe_png(path: str | Path) -> dict[str, Any]:
    """Width/height of a PNG from its header (used by tests and the CLI's report)."""
    data = Path(path).read_bytes()[:24]
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"{path}: not a PNG file")
    return {"width": int.from_bytes(data[16:20], "big"), "height": int.from_bytes(data[20:24], "big")}
