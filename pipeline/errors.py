"""Errors the curation pipeline raises on purpose (all subclass ``TrinityError``)."""

from __future__ import annotations

from common.errors import ConfigError, TrinityError

__all__ = ["ConfigError", "PipelineError", "StageError", "TrinityError"]


class PipelineError(TrinityError):
    """A curation run cannot go on (output folder in use by another config, a unit failed...)."""


class StageError(TrinityError):
    """A stage failed on a document: reads as "your data", with the stage and document named.

    Args:
        stage: the stage's registry name.
        doc_id: the offending document's id (or ``None`` when the whole batch failed).
        problem: what went wrong, in words.
    """

    def __init__(self, stage: str, doc_id: str | None, problem: str):
        self.stage = stage
        self.doc_id = doc_id
        self.problem = problem
        where = f" (doc {doc_id!r})" if doc_id is not None else ""
        super().__init__(f"stage {stage}{where}: {problem}")
