"""Batch-heterogeneity diagnostics: a trainer-side tracker, model-free loader statistics, plots.

- :class:`BHTracker`: feed per-microbatch losses each step; it records BH
  (max - mean microbatch loss), rolling statistics and loss spikes, writes JSONL.
- :class:`LoaderStats` / :func:`microbatch_stats`: per-microbatch document,
  source and position statistics from a loader batch dict; no model needed.
- :func:`plot_runs` / :func:`plot_loader_stats`: PNG figures (matplotlib Agg).

torch is never imported here; the tracker takes plain floats.
"""

from .loader_stats import BatchFormatError, LoaderStats, MicrobatchStats, entropy_bits, microbatch_stats
from .plots import plot_loader_stats, plot_runs
from .tracker import BHTracker, RunLog, RunLogError, SpikeRule, StepRecord, read_run, summarize

__all__ = [
    "BHTracker",
    "BatchFormatError",
    "LoaderStats",
    "MicrobatchStats",
    "RunLog",
    "RunLogError",
    "SpikeRule",
    "StepRecord",
    "entropy_bits",
    "microbatch_stats",
    "plot_loader_stats",
    "plot_runs",
    "read_run",
    "summarize",
]
