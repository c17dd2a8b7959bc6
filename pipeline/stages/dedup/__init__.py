"""Deduplication stages: exact (normalized-text hash) and fuzzy (MinHash + LSH)."""

from pipeline.stages.dedup import exact, minhash  # noqa: F401
