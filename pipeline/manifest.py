"""The curated output's ``manifest.json``: one typed model, one writer, one reader.

The manifest sits in the run folder (``OUT.curation/manifest.json``, see
:mod:`pipeline.layout`) and is written last, so its presence means the run finished. It
lists the kept shards (paths relative to ``OUT``) and the rejected ones (paths relative to
the run folder) with rows, bytes, text bytes and sha256, the unified schema, the config
hash, per-stage counters, the accounting check, timings and the ``run`` record (redacted
config, versions, UTC times; :mod:`pipeline.provenance`).

:func:`dump_manifest` is the only writer (the runner) and :func:`load_manifest` the only
reader (``pipeline summary``, the rerun check, the tokenize job's input listing). Both go
through :class:`CuratedManifest`, so a field of the wrong type is refused with its name
(``shards[0].rows: Input should be a valid integer``) instead of failing later as a
``KeyError`` or, worse, reading a different set of shards. Unknown extra keys are kept
(a newer writer may add some); known keys are strict (``"12"`` is not a row count).

Versions: 2 is this layout (run folder beside ``OUT``). Version 1 manifests sat inside
``OUT`` next to the shards; they are not read (:func:`load_manifest` says so and how to
rewrite the output).
"""

from __future__ import annotations

import json
from pathlib import PurePosixPath
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr, ValidationError
from pydantic import field_validator, model_serializer

from pipeline.errors import PipelineError
from pipeline.layout import MANIFEST, run_folder
from pipeline.stats import StageStats

__all__ = ["FORMAT", "FORMAT_VERSION", "CuratedManifest", "ManifestError", "ShardEntry", "StageEntry",
           "dump_manifest", "kept_shard_uris", "load_manifest", "manifest_uri"]

FORMAT = "trinity-curated"
FORMAT_VERSION = 2  # 1: manifest inside OUT (not read); 2: run folder beside OUT

Number = StrictFloat | StrictInt  # JSON has one number type: 3 and 3.0 are both seconds


class ManifestError(PipelineError):
    """A curated-output manifest is missing, unreadable or holds a wrong-typed field.

    Args:
        path: the manifest file.
        problem: what is wrong, naming the field.
    """

    def __init__(self, path: str, problem: str):
        self.path, self.problem = path, problem
        super().__init__(f"{path}: {problem}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class ShardEntry(_Strict):
    """One written shard: its path (relative), rows, bytes on disk, text bytes and sha256."""

    path: StrictStr
    rows: StrictInt = Field(ge=0)
    bytes: StrictInt = Field(ge=0)
    text_bytes: StrictInt = Field(ge=0)
    sha256: StrictStr = Field(pattern=r"^[0-9a-f]{64}$")

    @field_validator("path")
    @classmethod
    def _relative(cls, p: str) -> str:
        if not p or p.startswith("/") or "://" in p or ".." in PurePosixPath(p).parts or "\\" in p:
            raise ValueError(f"{p!r} must be a relative path inside the output")
        return p


class ColumnEntry(_Strict):
    name: StrictStr
    type: StrictStr


class RejectedBlock(_Strict):
    """Rejected rows: their count and shards (paths relative to the run folder)."""

    rows: StrictInt = Field(ge=0)
    shards: list[ShardEntry]


class InputBlock(_Strict):
    rows: StrictInt = Field(ge=0)
    units: StrictInt = Field(ge=0)
    files: list[StrictStr]


class StageEntry(StageStats):
    """One stage's counters over the whole run (``read`` first, then the config's stages)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    stage: StrictStr

    @model_serializer(mode="wrap")
    def _name_first(self, handler: Any) -> dict[str, Any]:
        doc = handler(self)
        return {"stage": doc.pop("stage"), **doc}


class Accounting(_Strict):
    ok: StrictBool
    problems: list[StrictStr]
    rule: StrictStr


class DriverBlock(_Strict):
    wall_s: Number
    cpu_s: Number
    peak_rss_mb: Number


class RunBlock(_Strict):
    """How the output was made (:func:`pipeline.provenance.run_record`)."""

    config: dict[str, Any]
    versions: dict[StrictStr, Any]
    started_at: Optional[StrictStr]
    finished_at: StrictStr


class CuratedManifest(_Strict):
    """A whole curated-output ``manifest.json``; :meth:`to_json` gives the plain dict back."""

    kind: Literal["trinity-curated"] = Field(alias="manifest")
    format_version: Literal[2]
    config_hash: StrictStr
    code_version: StrictStr
    format: Literal["parquet", "arrow"]
    compression: StrictStr
    rows: StrictInt = Field(ge=0)
    text_bytes: StrictInt = Field(ge=0)
    bytes: StrictInt = Field(ge=0)
    shards: list[ShardEntry]
    columns: list[ColumnEntry] = Field(alias="schema")
    rejected: RejectedBlock
    input: InputBlock
    stages: list[StageEntry]
    accounting: Accounting
    write_seconds: Number
    phases: Optional[dict[StrictStr, Number]] = None
    driver: Optional[DriverBlock] = None
    run: RunBlock

    def to_json(self) -> dict[str, Any]:
        """The manifest as written (JSON names: ``manifest``, ``schema``; unset optional blocks left out)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


def _problem(exc: ValidationError) -> str:
    from common.config import validation_message

    return validation_message(exc, root="manifest", limit=3, show_input=True, brackets=True)


def validate_manifest(data: Any, where: str) -> CuratedManifest:
    """Check a manifest's content; :class:`ManifestError` names ``where`` and the first bad fields."""
    if not isinstance(data, dict):
        raise ManifestError(where, "the manifest is not a JSON object")
    if data.get("manifest") != FORMAT:
        raise ManifestError(where, f"not a curated-output manifest (its 'manifest' key is {data.get('manifest')!r}, "
                                   f"expected {FORMAT!r})")
    version = data.get("format_version")
    if version != FORMAT_VERSION or isinstance(version, bool):
        hint = (" (version 1 wrote it inside the output folder: rerun curate with --overwrite to rewrite the "
                "output in the current layout)" if version == 1 else "")
        raise ManifestError(where, f"format_version {version!r} is not supported (expected {FORMAT_VERSION}){hint}")
    try:
        return CuratedManifest.model_validate(data)
    except ValidationError as exc:
        raise ManifestError(where, f"invalid manifest: {_problem(exc)}") from None


def manifest_uri(output: str) -> str:
    """Where the manifest of output folder ``output`` lives (in its run folder)."""
    return f"{run_folder(output)}/{MANIFEST}"


def dump_manifest(run: Any, data: dict[str, Any] | CuratedManifest) -> dict[str, Any]:
    """Validate ``data`` and write it atomically as the run folder's ``manifest.json``; returns the dict.

    Args:
        run: the run folder, a :class:`pipeline._fs.OutFS`.
        data: the manifest's fields (``format_version`` and ``manifest`` are filled in).
    """
    if isinstance(data, CuratedManifest):
        doc = data.to_json()
    else:
        doc = validate_manifest({**data, "manifest": FORMAT, "format_version": FORMAT_VERSION},
                                run.uri(MANIFEST)).to_json()
    run.write_json(doc, MANIFEST)
    return doc


def load_manifest(output: str, storage_options: dict[str, Any] | None = None, *,
                  missing_ok: bool = False) -> CuratedManifest | None:
    """Read and check the manifest of curated output folder ``output`` (local path or fsspec URI).

    Args:
        output: the output folder (``output.path``), not the run folder.
        storage_options: fsspec options.
        missing_ok: return ``None`` when there is no manifest (an unfinished run, a plain folder).

    Raises:
        ManifestError: no manifest (unless ``missing_ok``), not JSON, or a field of the wrong type.
    """
    import fsspec

    uri = manifest_uri(output)
    fs, path = fsspec.core.url_to_fs(uri, **(storage_options or {}))
    try:
        with fs.open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        if missing_ok:
            return None
        legacy = f"{str(output).rstrip('/')}/{MANIFEST}"
        hint = (f"; {legacy} is a version-1 manifest (inside the output folder): rerun curate with --overwrite"
                if fs.exists(fsspec.core.url_to_fs(legacy, **(storage_options or {}))[1]) else
                " (run not finished, or not a curated output)")
        raise ManifestError(uri, "no manifest" + hint) from None
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise ManifestError(uri, f"the manifest is not valid JSON: {exc}") from None
    return validate_manifest(data, uri)


def kept_shard_uris(output: str, storage_options: dict[str, Any] | None = None) -> list[str] | None:
    """The kept shards the manifest of ``output`` lists, as URIs under ``output``; ``None`` without a manifest.

    This is how other packages (the tokenize job) read a curated output: exactly the listed
    shards, never a stray file.
    """
    from rsdb.errors import ConfigError

    try:
        m = load_manifest(output, storage_options, missing_ok=True)
    except ConfigError:  # a bucket or filesystem root: never a curated output
        return None
    if m is None:
        return None
    base = str(output).rstrip("/")
    return [f"{base}/{s.path}" for s in m.shards]
