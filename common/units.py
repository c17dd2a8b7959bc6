"""Resumable work units: a run record per output folder and one done-marker per unit.

A job that splits its input into units (the curate runner's map phases, the tokenize
job) keeps the same two kinds of file in a state folder (``_units/`` or ``_work/``):

* ``run.json``, a :class:`RunRecord`: the job, a **fingerprint** of the settings that
  make two runs' outputs interchangeable, and those settings in readable form. A rerun
  with the same fingerprint resumes; one with another fingerprint is refused with
  :class:`RunMismatch` (naming the folder, both fingerprints and the settings that
  differ) unless it asks to overwrite: resuming would mix two kinds of output.
* ``[<phase>/]<unit><suffix>``: a unit's done-marker, written atomically
  (:func:`common.fs.atomic_write`) after the unit's outputs, with what the unit
  reports (its counts). A marker that is missing, unreadable or fails its model counts
  as "not done": the unit is redone, never trusted half-written.

Works on any fsspec location (the curate output may be on S3). Pure Python: no Ray, no
compiled core.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from common.config import validation_message
from common.errors import ConfigError
from common.fs import atomic_write, url_to_fs

__all__ = ["RECORD_NAME", "RECORD_VERSION", "RunMismatch", "RunRecord", "RunRecordError", "UnitLedger",
           "fingerprint"]

log = logging.getLogger(__name__)

#: the run record's file name inside the state folder
RECORD_NAME = "run.json"
#: the version of :class:`RunRecord`'s on-disk form
RECORD_VERSION = 1

M = TypeVar("M", bound=BaseModel)


def fingerprint(settings: Mapping[str, Any], files: Iterable[bytes] = ()) -> str:
    """16 hex digits of SHA-256 over ``files`` (in order) then ``settings`` as sorted JSON.

    ``settings`` must be JSON-serialisable; key order does not matter. ``files`` are the
    bytes of inputs whose content, not name, decides the output (a ``tokenizer.json``).
    """
    h = hashlib.sha256()
    for data in files:
        h.update(data)
    h.update(json.dumps(dict(settings), sort_keys=True).encode())
    return h.hexdigest()[:16]


class RunRecord(BaseModel):
    """``run.json``: which run of which job an output folder holds.

    Args:
        job: the job that wrote the folder (``"tokenize"``, ``"curate"``).
        fingerprint: :func:`fingerprint` of what makes outputs interchangeable.
        settings: those settings, readable (for the error that lists what differs).
        state: job-specific data fixed for the whole run (the curate job's unit plan).
    """

    model_config = ConfigDict(extra="forbid")

    format_version: int = RECORD_VERSION
    job: str = Field(min_length=1)
    fingerprint: str = Field(min_length=1)
    settings: dict[str, Any] = Field(default_factory=dict)
    state: dict[str, Any] = Field(default_factory=dict)


class RunRecordError(ConfigError):
    """A ``run.json`` exists but cannot be read as a run record."""


class RunMismatch(ConfigError):
    """The folder holds a run written with other settings; resuming would mix two outputs."""

    def __init__(self, folder: str, found: RunRecord, wanted: RunRecord, hint: str):
        self.folder, self.found, self.wanted = folder, found, wanted
        # a record without settings (written before they were kept) can only say "other"
        diff = _differences(found.settings, wanted.settings) if found.settings else ""
        job = f"a {found.job} run" if found.job == wanted.job else f"a {found.job} run (not {wanted.job})"
        super().__init__(f"{folder} holds {job} with other settings (fingerprint {found.fingerprint}, now "
                         f"{wanted.fingerprint}{'; differs in ' + diff if diff else ''}); {hint}")


def _differences(old: Mapping[str, Any], new: Mapping[str, Any], limit: int = 4) -> str:
    keys = sorted(k for k in set(old) | set(new) if old.get(k, "<unset>") != new.get(k, "<unset>"))
    shown = [f"{k} {_short(old.get(k, '<unset>'))} -> {_short(new.get(k, '<unset>'))}" for k in keys[:limit]]
    return ", ".join(shown) + (f" (+{len(keys) - limit} more)" if len(keys) > limit else "")


def _short(value: Any, width: int = 48) -> str:
    text = repr(value)
    return text if len(text) <= width else "..." + text[-(width - 3):]  # a path's end tells most


class UnitLedger:
    """The run record and done-markers of one state folder (local path or fsspec URI).

    Args:
        folder: the state folder (``OUT/_units``, ``OUT.curation/_work``); created on write.
        suffix: the markers' file-name ending (``".json"``, ``".done"``).
        storage_options: options for the filesystem of a URI ``folder``.
        label: what errors call the output (``OUT``); default: ``folder``.

    Picklable (it keeps only the URI and options), so Ray tasks can write markers.
    """

    def __init__(self, folder: str | os.PathLike, *, suffix: str = ".json",
                 storage_options: dict[str, Any] | None = None, label: str | None = None):
        self.folder = str(folder).rstrip("/")
        self.label = label or self.folder
        self.suffix = suffix
        self.storage_options = dict(storage_options or {})
        self._fs, self._root, self._prefix = url_to_fs(self.folder, self.storage_options)
        self._root = self._root.rstrip("/")

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (self.folder, self.suffix, self.storage_options, self.label))

    # ------------------------------------------------------------------ paths
    def _path(self, *parts: str) -> str:
        return "/".join([self._root, *parts])

    def _marker(self, unit: str, phase: str | None) -> str:
        if not unit or "/" in unit or unit + self.suffix == RECORD_NAME:
            raise ValueError(f"unit name {unit!r}: must be non-empty, without '/', and not the run record's name")
        return self._path(*([phase] if phase else []), unit + self.suffix)

    def uri(self, *parts: str) -> str:
        """A path users can open (with the protocol for remote stores)."""
        return self._prefix + self._path(*parts)

    def _read(self, path: str) -> bytes | None:
        if self._prefix:  # object-store listings are cached; another worker may have written since
            self._fs.invalidate_cache(path)
        try:
            with self._fs.open(path, "rb") as f:
                return f.read()
        except FileNotFoundError:
            return None

    # ------------------------------------------------------------------ run record
    def record(self, legacy: Callable[[dict[str, Any]], RunRecord | None] | None = None) -> RunRecord | None:
        """The folder's run record, or None when it has none.

        Args:
            legacy: turns the raw JSON of a record written before :class:`RunRecord`
                existed into one (or None: not recognised).

        Raises:
            RunRecordError: ``run.json`` exists but is not JSON, not a record, or of a
                newer version; the message names the file.
        """
        data = self._read(self._path(RECORD_NAME))
        if data is None:
            return None
        where = self.uri(RECORD_NAME)
        try:
            raw = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise RunRecordError(f"{where}: not JSON ({e})") from None
        if isinstance(raw, dict) and "job" not in raw and legacy is not None:
            converted = legacy(raw)
            if converted is not None:
                return converted
        try:
            rec = RunRecord.model_validate(raw)
        except ValidationError as e:
            raise RunRecordError(f"{where}: not a run record ({validation_message(e)})") from None
        if rec.format_version > RECORD_VERSION:
            raise RunRecordError(f"{where}: run record version {rec.format_version} is newer than this code "
                                 f"reads ({RECORD_VERSION}); upgrade trinity-data")
        return rec

    def claim(self, wanted: RunRecord, *, overwrite: bool = False, clear: Callable[[], None] | None = None,
              legacy: Callable[[dict[str, Any]], RunRecord | None] | None = None,
              hint: str = "use another output folder, or overwrite to replace it") -> RunRecord:
        """Start or resume the run ``wanted`` in this folder; returns the record in force.

        * no record: ``wanted`` is written and returned (a fresh run);
        * a record with the same job and fingerprint: it is returned unchanged (resume; its
          ``state``, e.g. the unit plan, is the run's);
        * another one (or an unreadable one) and ``overwrite``: ``clear()`` (the job's
          outputs), then every marker and the old record are removed and ``wanted`` written;
        * another one without ``overwrite``: :class:`RunMismatch`; an unreadable one:
          :class:`RunRecordError`.
        """
        try:
            found = self.record(legacy)
        except RunRecordError:
            if not overwrite:
                raise
            found = None
            stale = True
        else:
            stale = found is not None
            if found is not None and found.job == wanted.job and found.fingerprint == wanted.fingerprint:
                return found
            if found is not None and not overwrite:
                raise RunMismatch(self.label, found, wanted, hint)
        if stale:
            if clear is not None:
                clear()
            self.reset()
        atomic_write(self._path(RECORD_NAME), wanted.model_dump_json(indent=2), fs=self._fs)
        return wanted

    def reset(self) -> None:
        """Remove the run record and every marker (the whole state folder)."""
        try:
            self._fs.rm(self._root, recursive=True)
        except FileNotFoundError:
            pass

    # ------------------------------------------------------------------ done markers
    def mark(self, unit: str, result: BaseModel | Mapping[str, Any] | None = None, *, phase: str | None = None) -> None:
        """Mark ``unit`` done (atomically), with what it reports; call after its outputs are written."""
        if isinstance(result, BaseModel):
            text = result.model_dump_json()
        else:
            text = json.dumps(dict(result or {}), sort_keys=True)
        atomic_write(self._marker(unit, phase), text, fs=self._fs)

    def done(self, unit: str, model: type[M] | None = None, *, phase: str | None = None) -> M | dict[str, Any] | None:
        """What done ``unit`` reported (validated by ``model`` when given), or None: redo it.

        A missing marker, one that is not a JSON object, or one ``model`` rejects all read
        as None (logged): markers are written atomically, so such a file is damage, and
        redoing the unit is always safe.
        """
        path = self._marker(unit, phase)
        data = self._read(path)
        if data is None:
            return None
        try:
            raw = json.loads(data)
            if not isinstance(raw, dict):
                return self._redo(path, f"a JSON {type(raw).__name__}, not an object")
            return model.model_validate(raw) if model is not None else raw
        except ValidationError as e:
            return self._redo(path, validation_message(e))
        except (ValueError, UnicodeDecodeError) as e:  # not JSON
            return self._redo(path, str(e))

    def _redo(self, path: str, why: str) -> None:
        log.warning("%s: unreadable done-marker, the unit is redone (%s)", self._prefix + path, why)

    def done_units(self, *, phase: str | None = None) -> set[str]:
        """Names of the units with a marker (present, not checked: :meth:`done` reads one)."""
        folder = self._path(phase) if phase else self._root
        if self._prefix:
            self._fs.invalidate_cache(folder)
        try:
            names = [p.rstrip("/").rsplit("/", 1)[-1] for p in self._fs.ls(folder, detail=False)]
        except FileNotFoundError:
            return set()
        return {n[: -len(self.suffix)] for n in names
                if n.endswith(self.suffix) and n != RECORD_NAME and not n.startswith(".")}

    def forget(self, unit: str, *, phase: str | None = None) -> None:
        """Remove ``unit``'s marker (it will be redone)."""
        try:
            self._fs.rm(self._marker(unit, phase))
        except FileNotFoundError:
            pass


def _rebuild(folder: str, suffix: str, storage_options: dict[str, Any], label: str) -> UnitLedger:
    return UnitLedger(folder, suffix=suffix, storage_options=storage_options, label=label)
