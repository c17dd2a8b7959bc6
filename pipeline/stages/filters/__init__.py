"""Heuristic quality filters (Gopher, C4, FineWeb)."""

from pipeline.stages.filters import heuristics  # noqa: F401
