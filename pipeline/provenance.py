"""What a curated output records about how it was made: the config, the versions, the times.

The manifest's ``config_hash`` says whether two runs are interchangeable; this says *why*
a run came out as it did, so a reader can rerun it or explain a difference months later.
Nothing here may leak a secret or describe the machine: storage options and any key that
looks like a credential are redacted, the output location is left out (the manifest sits
in it), and versions are package versions, never install paths.

>>> redact({"input": {"paths": ["a.jsonl"], "storage_options": {"key": "AKIA", "anon": False}},
...         "headers": {"Authorization": "Bearer x"}})
{'input': {'paths': ['a.jsonl'], 'storage_options': {'key': '***', 'anon': '***'}}, 'headers': {'Authorization': '***'}}
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import platform
import re
from importlib import metadata
from typing import Any

__all__ = ["REDACTED", "redact", "run_record", "utc_now", "versions"]

REDACTED = "***"
# Keys whose values are credentials wherever they appear (fsspec, HTTP clients, API engines).
# Matched on whole words of the key, so max_doc_tokens or id_field stay readable.
_SECRET_KEY = re.compile(r"(^|[_-])(secrets?|passwords?|passwd|credentials?|api[_-]?key|auth|authorization|"
                         r"token|key|private[_-]?key|session[_-]?token)$", re.IGNORECASE)
# Whole subtrees that only say how to reach storage: every value is redacted.
_OPAQUE = {"storage_options"}
_PACKAGES = {"ray": "ray", "pyarrow": "pyarrow", "tokenizers": "tokenizers", "trinity-data": "trinity-data"}


def utc_now() -> str:
    """ISO 8601 UTC timestamp, seconds precision (``2026-01-31T12:00:00+00:00``)."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def redact(node: Any, *, opaque: bool = False) -> Any:
    """A copy of ``node`` with credential-like keys and storage options replaced by ``***``."""
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            if opaque or _SECRET_KEY.search(str(k)):
                out[k] = _mask(v)
            else:
                out[k] = redact(v, opaque=str(k) in _OPAQUE)
        return out
    if isinstance(node, list):
        return [redact(v, opaque=opaque) for v in node]
    if opaque:
        return REDACTED
    if isinstance(node, str):  # a URL with userinfo, a token=... pair inside a value
        from .redact import redact_text

        return redact_text(node)
    return node


def _mask(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _mask(x) for k, x in v.items()}
    return REDACTED if v not in (None, "", [], {}) else v


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def versions(stage_specs: list[Any] | None = None) -> dict[str, Any]:
    """Python and library versions, plus the language-ID model when a ``langid`` stage runs."""
    out: dict[str, Any] = {"python": platform.python_version()}
    out.update({name: _version(dist) for name, dist in _PACKAGES.items()})
    for spec in stage_specs or []:
        if getattr(spec, "name", None) == "langid":
            out["langid_model"] = langid_model(dict(getattr(spec, "options", {}) or {}))
    return out


def langid_model(options: dict[str, Any]) -> dict[str, Any]:
    """Which language-ID model a ``langid`` stage uses: the package version, or the file's digest."""
    path = options.get("model_path")
    backend = options.get("backend", "py3langid")
    if path is None and backend in ("py3langid", "cld2"):
        package = {"py3langid": "py3langid", "cld2": "pycld2"}[backend]
        return {"backend": backend, "package": package, "version": _version(package)}
    if path is None and backend == "lingua":
        return {"backend": "lingua", "package": "lingua-language-detector",
                "version": _version("lingua-language-detector"),
                "low_accuracy": bool(options.get("low_accuracy", True))}
    info: dict[str, Any] = {"backend": "fasttext", "version": _version("fasttext"),
                            "file": str(path).rstrip("/").rsplit("/", 1)[-1] if path else None}
    if path:
        info["sha256"] = _file_digest(str(path))
    return info


def _file_digest(uri: str) -> str | None:
    """sha256 of a model file (identifies it without its location); None if it cannot be read."""
    import fsspec

    h = hashlib.sha256()
    try:
        with fsspec.open(uri, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    except (OSError, ValueError):
        return None
    return h.hexdigest()


def run_record(cfg: Any, *, started_at: str | None, finished_at: str | None = None) -> dict[str, Any]:
    """The manifest's ``run`` entry for a :class:`pipeline.config.PipelineConfig`.

    ``config`` is the validated config (defaults filled in) with secrets redacted and
    ``output.path`` left out; ``versions`` and ``started_at`` / ``finished_at`` (UTC).
    """
    doc = cfg.model_dump(mode="json")
    doc.get("output", {}).pop("path", None)
    doc.get("ray", {}).pop("address", None)  # a host name, and it does not change the output
    return {
        "config": redact(doc),
        "versions": versions(list(getattr(cfg, "stages", []) or [])),
        "started_at": started_at,
        "finished_at": finished_at or utc_now(),
    }
