"""Heuristic quality filters: one module per rule set (Gopher quality, Gopher repetition, C4,
FineWeb), ``quality`` (the four as a list in one stage) and FineWeb 2's per-language rules."""

from pipeline.stages.filters import c4, fineweb, gopher_quality, gopher_repetition, multilingual, quality  # noqa: F401
