"""Curation stages; importing this package registers every built-in stage."""

from pipeline.stages import decontaminate, dedup, filters, langid, normalize, pii  # noqa: F401
