"""The token-shard ``manifest.json``: one typed model, one writer, one reader.

A manifest lists a shard directory's files with their document and token counts, size
in bytes and xxh64 checksum, plus the source, tokenizer and vocabulary size. Version 2
adds a ``digest``: the xxh64 of the manifest itself (canonical JSON, every key but
``digest``). The reader recomputes it, so an edited manifest (a shard listed twice, one
removed, two entries swapped, a total changed) is refused with a
:class:`~rsdb.errors.ShardError` instead of silently yielding a different corpus.

Trade-off: the digest detects accidental or careless edits, not a deliberate forger (it
is unkeyed: whoever rewrites a manifest can recompute it). Version-1 manifests (written
before the digest existed) are still read, with a warning, and get every other check
(types, duplicate paths, totals), but a swap of two entries cannot be detected in them.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError, field_validator

from common.fs import atomic_write
from common.config import validation_message

from .errors import ShardError

__all__ = ["MANIFEST", "Manifest", "ShardEntry", "dump_manifest", "load_manifest", "manifest_digest", "seal"]

log = logging.getLogger(__name__)

FORMAT = "rsdb-tokens"
FORMAT_VERSION = 2  # 2: adds "digest"; 1 is still read
MANIFEST = "manifest.json"
_HEX16 = r"^[0-9a-f]{16}$"


class ShardEntry(BaseModel):
    """One shard file as the manifest lists it; counts are strict ints (``"12"`` is refused)."""

    model_config = ConfigDict(extra="allow")
    file: StrictStr
    num_docs: StrictInt = Field(ge=0)
    num_tokens: StrictInt = Field(ge=0)
    # May be absent (hand-made manifests); when present they must be real values: an
    # explicit null would silently switch the size or checksum check off.
    bytes: StrictInt = Field(default=None, ge=0)  # type: ignore[assignment]
    xxh64: StrictStr = Field(default=None, pattern=_HEX16)  # type: ignore[assignment]
    sha256: StrictStr = Field(default=None, pattern=r"^[0-9a-f]{64}$")  # type: ignore[assignment]

    @field_validator("file")
    @classmethod
    def _relative(cls, f: str) -> str:
        # split("/") finds a ".." component as PurePosixPath(f).parts would, at a
        # twentieth of the cost: this runs once per shard when a manifest is opened.
        if not f or os.path.isabs(f) or ".." in f.split("/") or "\\" in f:
            raise ValueError(f"{f!r} must be a relative path inside the shard directory")
        return f


class Manifest(BaseModel):
    """A whole ``manifest.json``; ``model_dump()`` gives the plain dict back."""

    model_config = ConfigDict(extra="allow")
    format: Literal["rsdb-tokens"]
    format_version: Literal[1, 2]
    source: StrictStr
    tokenizer: Optional[StrictStr] = None
    vocab_size: Optional[StrictInt] = Field(default=None, ge=1, le=2**31)
    dtype: Literal["uint32"] = "uint32"
    num_docs: StrictInt = Field(ge=0)
    num_tokens: StrictInt = Field(ge=0)
    tokens_per_source: Optional[dict[StrictStr, StrictInt]] = None
    shards: list[ShardEntry]
    extra: dict[str, Any] = Field(default_factory=dict)
    digest: Optional[str] = Field(default=None, pattern=_HEX16)


def manifest_digest(data: dict[str, Any]) -> str:
    """xxh64 of the canonical JSON of ``data`` without its ``digest`` key.

    >>> manifest_digest({"a": 1, "digest": "x"}) == manifest_digest({"a": 1})
    True
    """
    import xxhash

    body = {k: v for k, v in data.items() if k != "digest"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return xxhash.xxh64(text.encode()).hexdigest()


def seal(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` as a current-version manifest with a fresh ``digest`` (validated first).

    Every writer (the shard writer, the tokenize job's merge of per-unit manifests)
    calls this last, after its final edit, so the digest covers what is written.
    """
    body = {k: v for k, v in data.items() if k != "digest"}
    body["format_version"] = FORMAT_VERSION
    _check(Path(MANIFEST), body, require_digest=False)
    return {**body, "digest": manifest_digest(body)}


def dump_manifest(directory: str | os.PathLike, data: dict[str, Any]) -> dict[str, Any]:
    """Seal ``data`` and write it atomically as ``directory/manifest.json``; returns it."""
    sealed = seal(data)
    path = Path(directory) / MANIFEST
    atomic_write(path, json.dumps(sealed, indent=2))
    return sealed


def _problem(exc: ValidationError) -> str:
    return validation_message(exc, root="manifest", limit=3, show_input=True, brackets=True)


def _check(mpath: Path, data: Any, require_digest: bool) -> Manifest:
    p = str(mpath)
    if not isinstance(data, dict):
        raise ShardError(p, "manifest is not a JSON object")
    # Named checks first: they give the clearest message for the commonest mistakes.
    if data.get("format") != FORMAT:
        raise ShardError(p, f"format is {data.get('format')!r}, expected {FORMAT!r}")
    if data.get("format_version") not in (1, 2) or isinstance(data.get("format_version"), bool):
        raise ShardError(p, f"format_version {data.get('format_version')!r} is not supported (expected 1 or 2)")
    for key in ("source", "num_docs", "num_tokens", "shards"):
        if key not in data:
            raise ShardError(p, f"missing key {key!r}")
    try:
        m = Manifest.model_validate(data)
    except ValidationError as exc:
        raise ShardError(p, f"invalid manifest: {_problem(exc)}") from None
    seen: dict[str, int] = {}
    for i, s in enumerate(m.shards):
        key = os.path.normpath(s.file)
        if key in seen:
            raise ShardError(p, f"shards[{i}].file {s.file!r} is listed twice (also shards[{seen[key]}]): "
                                "its documents would be read twice per epoch")
        seen[key] = i
    docs = sum(s.num_docs for s in m.shards)
    tokens = sum(s.num_tokens for s in m.shards)
    if docs != m.num_docs or tokens != m.num_tokens:
        raise ShardError(p, f"shards add up to {docs} docs / {tokens} tokens but the manifest says "
                            f"{m.num_docs} / {m.num_tokens}")
    if m.tokens_per_source is not None and sum(m.tokens_per_source.values()) != m.num_tokens:
        raise ShardError(p, f"tokens_per_source adds up to {sum(m.tokens_per_source.values())} tokens "
                            f"but num_tokens is {m.num_tokens}")
    if m.format_version >= 2:
        if m.digest is None:
            if require_digest:
                raise ShardError(p, "format_version 2 manifest has no 'digest'")
        elif m.digest != manifest_digest(data):
            raise ShardError(p, f"digest mismatch: the manifest was edited after it was written (it says "
                                f"{m.digest}, its content hashes to {manifest_digest(data)})")
    return m


def load_manifest(path: str | os.PathLike) -> Manifest:
    """Read and check ``manifest.json`` (a shard directory or the file itself).

    Checks: JSON, typed fields, relative and distinct shard paths, totals, and (version
    2) the digest. Shard files are not opened here.

    Raises:
        ShardError: naming the manifest file and the field that is wrong.
    """
    path = Path(path)
    mpath = path if path.name == MANIFEST else path / MANIFEST
    if not mpath.is_file():
        raise ShardError(str(mpath), "no manifest.json: not a token shard directory (or an unfinished write)")
    try:
        data = json.loads(mpath.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise ShardError(str(mpath), f"manifest is not valid JSON: {exc}") from None
    m = _check(mpath, data, require_digest=True)
    if m.format_version == 1:
        log.warning("%s: version-1 manifest without a digest: edits to its shard list cannot all be detected; "
                    "rewrite it with rsdb.manifest.dump_manifest to seal it", mpath)
    return m
