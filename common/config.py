"""Config files and overrides, read the same way by every command and job.

* :func:`load_mapping`: a YAML mapping from a local path or any fsspec URI.
* ``--set KEY=VALUE``: one rule everywhere (the ``trinity-data`` commands and the
  ``python -m jobs.*`` entrypoints). ``KEY`` is dotted (``output.path``); ``VALUE`` is
  read as a YAML value, so it means what it would mean written in the config file:
  ``x=yes`` and ``x=true`` are ``True``, ``x=8`` is ``8``, ``x=null`` (or ``x=``) is
  ``None``, ``x=[1, 2]`` is a list, and JSON values read as before; quote to keep a
  string (``x='"yes"'`` in a shell).
* :func:`validation_message`: a pydantic ``ValidationError`` as ``key.path: message``,
  so every config error names the field.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from common.errors import ConfigError

__all__ = ["apply_overrides", "load_mapping", "parse_override", "parse_overrides", "parse_value",
           "read_text", "set_dotted", "validation_lines", "validation_message"]


def parse_value(text: str) -> Any:
    """The ``VALUE`` of ``--set KEY=VALUE``: a YAML value (the config file's own rule).

    >>> parse_value("yes"), parse_value("8"), parse_value("s3://b/x"), parse_value("[1, 2]"), parse_value("")
    (True, 8, 's3://b/x', [1, 2], None)
    """
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"value {text!r} is not YAML: {e}") from None


def parse_override(item: str) -> tuple[str, Any]:
    """``"a.b=VALUE"`` -> ``("a.b", value)``; the error names the argument.

    >>> parse_override("output.path=out/x")
    ('output.path', 'out/x')
    """
    key, sep, value = item.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set {item!r}: expected KEY=VALUE (KEY dotted, e.g. output.path=out/x)")
    try:
        return key, parse_value(value)
    except ConfigError as e:
        raise ConfigError(f"--set {key}: {e}") from None


def parse_overrides(items: Iterable[str] | None) -> dict[str, Any]:
    """Every ``--set`` argument, in order (a later one for the same key wins)."""
    return dict(parse_override(item) for item in items or ())


def set_dotted(mapping: dict[str, Any], key: str, value: Any) -> None:
    """``mapping["a"]["b"] = value`` for ``key="a.b"``, creating missing mappings.

    Raises:
        ConfigError: a parent on the way holds something other than a mapping.
    """
    node = mapping
    *parents, leaf = key.split(".")
    for i, part in enumerate(parents):
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {key}: {'.'.join(parents[: i + 1])} is not a mapping")
    node[leaf] = value


def apply_overrides(mapping: dict[str, Any], overrides: Mapping[str, Any] | Iterable[str] | None) -> dict[str, Any]:
    """Apply overrides to ``mapping`` in place and return it.

    Args:
        overrides: ``KEY=VALUE`` strings (parsed by :func:`parse_override`) or an already
            parsed ``{dotted key: value}`` mapping.
    """
    pairs = overrides.items() if isinstance(overrides, Mapping) else parse_overrides(overrides).items()
    for key, value in pairs:
        set_dotted(mapping, key, value)
    return mapping


def read_text(uri: str, storage_options: dict[str, Any] | None = None) -> str:
    """The text at a local path or fsspec URI; errors name the URI."""
    import fsspec

    try:
        with fsspec.open(str(uri), "rt", encoding="utf-8", **(storage_options or {})) as f:
            return f.read()
    except FileNotFoundError:
        raise ConfigError(f"{uri}: config file not found") from None
    except (OSError, ValueError, ImportError) as e:
        raise ConfigError(f"{uri}: cannot read config: {type(e).__name__}: {e}") from None


def load_mapping(uri: str, overrides: Mapping[str, Any] | Iterable[str] | None = None) -> dict[str, Any]:
    """Read the YAML mapping at ``uri`` (an empty file is ``{}``) and apply ``overrides``.

    Raises:
        ConfigError: the file is missing, unreadable, not YAML, not a mapping, or an
            override is malformed; the message names the file or the ``--set`` key.
    """
    import yaml

    text = read_text(uri)
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{uri}: not valid YAML: {e}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{uri}: expected a mapping at the top level, got {type(raw).__name__}")
    return apply_overrides(raw, overrides)


def _loc(parts: Iterable[Any], brackets: bool = False) -> str:
    """``("stages", 0, "name")`` -> ``stages.0.name`` (the spelling ``--set`` takes), or with
    ``brackets`` ``stages[0].name`` (how a JSON document's items read)."""
    if not brackets:
        return ".".join(str(p) for p in parts)
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts).lstrip(".")


def validation_lines(exc: Exception, *, root: str = "", limit: int | None = None,
                     show_input: bool = False, brackets: bool = False) -> list[str]:
    """One ``key.path: message`` line per problem of a pydantic ``ValidationError``.

    Args:
        exc: the error; anything without pydantic's ``errors()`` gives ``[str(exc)]``.
        root: the name for a problem of the whole object (empty ``loc``); ``""`` omits it.
        limit: keep only the first ``limit`` problems.
        show_input: append the offending value (cut to 60 characters).
        brackets: list items as ``[i]`` (files such as manifests) instead of ``.i`` (configs).
    """
    errors = getattr(exc, "errors", None)
    if not callable(errors):
        return [str(exc)]
    try:
        found = list(errors())
    except Exception:  # an ``errors`` attribute that is not pydantic's
        return [str(exc)]
    lines = []
    for err in found[:limit]:
        loc = _loc(err.get("loc", ()), brackets) or root
        msg = str(err.get("msg", "")).removeprefix("Value error, ")
        if show_input and "input" in err:
            msg += f" (got {err['input']!r:.60})"
        lines.append(f"{loc}: {msg}" if loc else msg)
    return lines


def validation_message(exc: Exception, *, root: str = "", sep: str = "; ", limit: int | None = None,
                       show_input: bool = False, brackets: bool = False) -> str:
    """:func:`validation_lines` joined by ``sep``; with ``limit``, the rest counted (``(+N more)``).

    >>> from pydantic import BaseModel
    >>> class Out(BaseModel):
    ...     workers: int
    >>> class Cfg(BaseModel):
    ...     output: Out
    >>> try:
    ...     Cfg.model_validate({"output": {"workers": "many"}})
    ... except Exception as e:
    ...     print(validation_message(e))
    output.workers: Input should be a valid integer, unable to parse string as an integer
    """
    lines = validation_lines(exc, root=root, limit=limit, show_input=show_input, brackets=brackets)
    count = getattr(exc, "error_count", None)
    more = count() - len(lines) if callable(count) and limit is not None else 0
    return sep.join(lines) + (f" (+{more} more)" if more > 0 else "")
