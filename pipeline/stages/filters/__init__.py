"""Heuristic quality filters (Gopher, C4, FineWeb; FineWeb 2's per-language rules)."""

from pipeline.stages.filters import heuristics, multilingual  # noqa: F401
