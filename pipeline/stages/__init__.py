"""Curation stages; importing this package registers every built-in stage."""

from pipeline.stages import dedup, langid, normalize  # noqa: F401
