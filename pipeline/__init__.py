"""Curation: Ray Data jobs that read, normalize, filter, dedup, rephrase and write corpora.

>>> from pipeline import load_config, run_pipeline        # doctest: +SKIP
>>> result = run_pipeline(load_config("pipeline/configs/demo.yaml"))  # doctest: +SKIP
>>> result.manifest["rows"]                                # doctest: +SKIP
>>> load_manifest("out/demo/curated").rows                 # doctest: +SKIP
"""

from pipeline.config import PipelineConfig, load_config, parse_config
from pipeline.errors import PipelineError, StageError
from pipeline.manifest import CuratedManifest, ManifestError, load_manifest
from pipeline.runner import RunResult, run_pipeline
from pipeline.stages.base import (
    Filter,
    FilterConfig,
    FilterOutput,
    GlobalStage,
    Stage,
    StageConfig,
    StageResult,
    Verdict,
    register_stage,
)

__all__ = [
    "CuratedManifest",
    "Filter",
    "FilterConfig",
    "FilterOutput",
    "GlobalStage",
    "ManifestError",
    "PipelineConfig",
    "PipelineError",
    "RunResult",
    "Stage",
    "StageConfig",
    "StageError",
    "StageResult",
    "Verdict",
    "load_config",
    "load_manifest",
    "parse_config",
    "register_stage",
    "run_pipeline",
]
