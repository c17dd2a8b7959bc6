"""Rephrase job: rewrite documents with an LLM (vLLM on the GPU workers) in prompt styles.

    python -m jobs.rephrase --config s3://bucket/configs/rephrase.yaml

A curate config (:class:`pipeline.config.PipelineConfig`) that contains the ``rephrase``
stage (:class:`pipeline.rephrase.RephraseConfig`), run by
:func:`pipeline.runner.run_pipeline`: each document yields one row per style, outputs are
validated, failures are rejected with their reason. Engine actors ask Ray for GPUs
(``num_gpus``), so on KubeRay they land on the GPU worker group. Resumable like curate.
"""

from __future__ import annotations

from jobs._entry import run_module
from jobs.curate import pipeline_job

JOB = pipeline_job(
    "rephrase",
    "Rephrase documents with an LLM in versioned prompt styles (a curate config with a rephrase stage).",
    required=("rephrase",),
)


def main(argv: list[str] | None = None) -> int:
    from jobs._entry import main as _main

    return _main(JOB, argv)


if __name__ == "__main__":
    run_module(JOB)
