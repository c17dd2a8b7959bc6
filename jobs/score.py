"""Score job: model-based quality scoring (an LLM judge, or the hashed n-gram classifier).

    python -m jobs.score --config s3://bucket/configs/score.yaml

A curate config (:class:`pipeline.config.PipelineConfig`) that contains a ``score`` stage
(LLM judge, FineWeb-Edu-style 0-5 score in a ``quality`` column, filtered by threshold) or
a ``quality_classifier`` stage (CPU), run by :func:`pipeline.runner.run_pipeline`. Rows
below the threshold are kept in ``rejected/`` with reason ``low_quality``. Resumable.
"""

from __future__ import annotations

from jobs._entry import run_module
from jobs.curate import pipeline_job

JOB = pipeline_job(
    "score",
    "Score document quality with an LLM judge or a trained classifier (a curate config with a score stage).",
    required=("score", "quality_classifier"),
)


def main(argv: list[str] | None = None) -> int:
    from jobs._entry import main as _main

    return _main(JOB, argv)


if __name__ == "__main__":
    run_module(JOB)
