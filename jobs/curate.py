"""Curate job: read, filter, deduplicate and write Parquet shards (:mod:`pipeline`).

    python -m jobs.curate --config s3://bucket/configs/curate.yaml [--overwrite]

A thin entrypoint over :func:`pipeline.runner.run_pipeline`; the config is a curate
config (:class:`pipeline.config.PipelineConfig`, e.g. ``pipeline/configs/demo.yaml``)
read from any fsspec URI. Reruns resume: finished work units are skipped, and a run
whose output is complete for the same config returns at once.

The rephrase and score jobs (:mod:`jobs.rephrase`, :mod:`jobs.score`) are curate runs
that must contain their model stage; :func:`pipeline_job` builds all three.
"""

from __future__ import annotations

import argparse
from typing import Any

from jobs._entry import Job, Result, run_module


def _stage_summary(manifest: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for s in manifest.get("stages", []):
        if s["stage"] in names:
            out[f"{s['stage']}_in"] = s["docs_in"]
            out[f"{s['stage']}_kept"] = s["docs_kept"]
            out[f"{s['stage']}_rejected"] = s["docs_rejected"]
    return out


def _run_folder(cfg) -> str:
    """The stats file goes in the run folder (``OUT.curation``): ``OUT`` holds only shards."""
    from pipeline.layout import run_folder

    return run_folder(cfg.output.path)


def pipeline_job(name: str, description: str, required: tuple[str, ...] = ()) -> Job:
    """A :class:`~jobs._entry.Job` that runs a curate config.

    Args:
        name: the job's name.
        description: ``--help`` text.
        required: at least one of these stages must be in the config (``()``: any config).
    """

    def load(raw: dict[str, Any], uri: str):
        from pipeline.config import PipelineConfig
        from rsdb.errors import ConfigError

        cfg = PipelineConfig.model_validate(raw)
        if required and not any(s.name in required for s in cfg.stages):
            have = [s.name for s in cfg.stages] or "none"
            raise ConfigError(f"{uri}: stages: the {name} job needs a {' or '.join(required)} stage (have {have})")
        return cfg

    def run(cfg, args: argparse.Namespace) -> Result:
        from pipeline.runner import run_pipeline

        result = run_pipeline(cfg, overwrite=args.overwrite)
        m = result.manifest
        summary = {
            "docs_in": m["input"]["rows"],
            "docs_out": m["rows"],
            "rejected": m["rejected"]["rows"],
            "shards": len(m["shards"]),
            "text_mb": round(m["text_bytes"] / 1e6, 2),
            "units": result.units_total,
            "units_skipped": result.units_skipped,
            "already_complete": result.already_complete or None,
            **_stage_summary(m, required),
        }
        return Result(summary=summary, stats={"manifest": m, "seconds": result.seconds})

    def add_arguments(ap: argparse.ArgumentParser) -> None:
        ap.add_argument("--overwrite", action="store_true",
                        help="discard a finished or partial run of a different config at output.path")

    def ray_defaults(cfg) -> dict[str, Any]:
        return {"address": cfg.ray.address, "num_cpus": cfg.ray.num_cpus}

    return Job(
        name=name, description=description, load=load, output=lambda cfg: cfg.output.path, run=run,
        stats_folder=_run_folder,
        add_arguments=add_arguments, ray_defaults=ray_defaults,
    )


JOB = pipeline_job(
    "curate",
    "Curate documents: read, normalize, filter, deduplicate and write Parquet shards (resumable).",
)


def main(argv: list[str] | None = None) -> int:
    from jobs._entry import main as _main

    return _main(JOB, argv)


if __name__ == "__main__":
    run_module(JOB)
