"""Curation stages; importing this package registers every built-in stage."""

from pipeline.stages import dedup, filters, langid, normalize  # noqa: F401
