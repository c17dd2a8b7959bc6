"""Typed curate configs: parse YAML once, validate everything before any work starts.

A config names its stages by registry name; each stage's options are validated by
that stage's own pydantic model, and errors name the key (``stages[2].gopher_quality.min_doc_words``).

>>> cfg = PipelineConfig.model_validate({"input": {"paths": ["docs.jsonl"]},
...                                     "output": {"path": "out"}, "stages": ["normalize"]})
>>> [s.name for s in cfg.build_stages()]
['normalize']
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from common.config import load_mapping, validation_message
from pipeline.errors import ConfigError
from pipeline.stages.base import STAGES, Stage

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9,
          "t": 10**12, "tb": 10**12, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_size(value: int | str) -> int:
    """``"64MB"`` -> 64_000_000; ints pass through.

    >>> parse_size("1.5 MiB")
    1572864
    """
    if isinstance(value, int):
        return value
    m = _SIZE.match(str(value))
    if not m or (m.group(2) or "").lower() not in _UNITS:
        raise ValueError(f"not a size: {value!r} (use bytes or e.g. '64MB', '1GiB')")
    return int(float(m.group(1)) * _UNITS[(m.group(2) or "").lower()])


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class InputConfig(_Model):
    """Where documents come from and which fields hold what."""

    paths: list[str] = Field(min_length=1, description="files, folders or globs; local paths or any fsspec URI")
    format: Literal["auto", "jsonl", "parquet", "arrow", "text", "hf"] = "auto"
    text_field: str = "text"
    id_field: str | None = "id"
    fields: list[str] | None = Field(None, description="extra fields to keep (None keeps all)")
    rename: dict[str, str] = Field(default_factory=dict, description="input field -> column name")
    source: str | None = Field(None, description="value of `source` when the data has no source field")
    unit_rows: int = Field(2000, gt=0, description="records per work unit (the resume granularity)")
    hf_builder: str | None = Field(None, description="datasets.load_dataset builder for local files (json, csv, ...)")
    storage_options: dict[str, Any] = Field(default_factory=dict)
    on_bad_file: Literal["error", "reject"] = Field(
        "error", description="a file whose bytes contradict its name, or a damaged one: stop before work starts "
                             "(error) or reject it into rejected/ with the reason and go on (reject)")


class OutputConfig(_Model):
    """Where curated shards go and how they are cut."""

    path: str
    format: Literal["parquet", "arrow"] = "parquet"
    shard_bytes: int = Field(64_000_000, gt=0, description="target text bytes per shard")
    compression: Literal["zstd", "snappy", "gzip", "lz4", "none"] = "zstd"
    compression_level: int | None = 3
    storage_options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("shard_bytes", mode="before")
    @classmethod
    def _size(cls, v: Any) -> int:
        return parse_size(v)


class RayConfig(_Model):
    """How the run uses the cluster; does not change the output."""

    address: str | None = Field(None, description="cluster address; None uses RAY_ADDRESS or starts a local one")
    workers: int | None = Field(None, gt=0, description="parallel workers for the map phase (default: cluster CPUs)")
    batch_size: int = Field(256, gt=0)
    num_cpus: int | None = Field(None, gt=0, description="CPUs of a local cluster started by the run")


class StageSpec(_Model):
    """One resolved entry of ``stages:``."""

    name: str
    options: dict[str, Any] = Field(default_factory=dict)


class PipelineConfig(_Model):
    """A whole curate run: input, ordered stages, output, cluster settings."""

    input: InputConfig
    stages: list[StageSpec] = Field(default_factory=list)
    output: OutputConfig
    ray: RayConfig = Field(default_factory=RayConfig)
    progress: bool = True

    @field_validator("stages", mode="before")
    @classmethod
    def _stage_forms(cls, v: Any) -> Any:
        """Accept ``"normalize"``, ``{normalize: {...}}`` and ``{name: normalize, ...}``."""
        if not isinstance(v, list):
            return v
        out = []
        for i, item in enumerate(v):
            if isinstance(item, str):
                out.append({"name": item})
            elif isinstance(item, dict) and "name" in item:
                out.append({"name": item["name"], "options": {k: x for k, x in item.items() if k != "name"}})
            elif isinstance(item, dict) and len(item) == 1:
                (name, opts), = item.items()
                if opts is not None and not isinstance(opts, dict):
                    raise ValueError(f"stages[{i}].{name}: options must be a mapping, got {type(opts).__name__}")
                out.append({"name": name, "options": opts or {}})
            else:
                raise ValueError(f"stages[{i}]: use a stage name, {{name: {{...}}}} or {{name: ..., option: ...}}")
        return out

    @model_validator(mode="after")
    def _stages_exist(self) -> "PipelineConfig":
        load_stage_plugins()
        for i, spec in enumerate(self.stages):
            cls = STAGES.get(spec.name)
            if cls is None:
                raise ValueError(f"stages[{i}]: unknown stage {spec.name!r} (known: {', '.join(sorted(STAGES))})")
            try:
                cls.Config.model_validate(spec.options)
            except ValidationError as e:
                raise ValueError(f"stages[{i}].{spec.name}: " + validation_message(e)) from None
        names = [s.name for s in self.stages]
        if len(set(names)) != len(names):
            raise ValueError(f"stages: a stage name appears twice in {names}; stats are kept per name")
        return self

    def build_stages(self) -> list[Stage]:
        """Instantiate the configured stages, in order."""
        load_stage_plugins()
        return [STAGES[s.name](STAGES[s.name].Config.model_validate(s.options)) for s in self.stages]

    def hashed_settings(self) -> dict[str, Any]:
        """Everything that changes the output's content (not where it goes, ``ray`` or ``progress``)."""
        return self.model_dump(mode="json", exclude={"ray": True, "progress": True,
                                                     "output": {"path", "storage_options"},
                                                     "input": {"storage_options"}})

    def config_hash(self) -> str:
        """sha256 over :meth:`hashed_settings` (sorted JSON)."""
        return hashlib.sha256(json.dumps(self.hashed_settings(), sort_keys=True).encode()).hexdigest()


def load_stage_plugins() -> None:
    """Import the built-in stages, and optional stage packages when installed.

    ``pipeline.rephrase`` registers the rephrase/score stages; its model imports
    stay inside those stages, so importing it here is cheap.
    """
    import importlib

    import pipeline.stages  # noqa: F401  (registers built-ins)

    try:
        importlib.import_module("pipeline.rephrase")
    except ModuleNotFoundError as e:
        if e.name not in ("pipeline.rephrase",):
            raise


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> PipelineConfig:
    """Read and validate a YAML curate config.

    Args:
        path: the YAML file (a local path or any fsspec URI).
        overrides: dotted keys to replace, e.g. ``{"output.path": "out/x"}``.

    Raises:
        ConfigError: the file is missing, not YAML, or fails validation (the message names the key).
    """
    raw = load_mapping(str(path), overrides)  # the one YAML + dotted-override rule (common.config)
    return parse_config(raw, origin=str(path))


def parse_config(raw: dict[str, Any], origin: str = "config") -> PipelineConfig:
    """Validate an already-parsed config mapping (see :func:`load_config`)."""
    try:
        return PipelineConfig.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(f"{origin}: {validation_message(e)}") from None
