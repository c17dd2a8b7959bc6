"""`trinity-data tokenize`: curated shards -> RSDB token shards (a Ray Data job).

The flags are derived from :class:`tokenizer.tokenize_job.TokenizeConfig`, field by field, so the
command has every knob the job config has and no other: ``unit_rows`` is ``--unit-rows``,
a bool ``bos`` is ``--bos/--no-bos``, ``inputs`` is ``--input`` (repeatable) and ``output``
is ``--out``. A flag not given leaves the model's default; the values given are validated
by the model before Ray starts, and an error names the flag.
"""

from __future__ import annotations

import inspect
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from tokenizer.tokenize_job import TokenizeConfig

console = Console()

#: Fields whose flag is not ``--<field-name>``: the spellings users already have.
FLAGS = {"inputs": "--input", "output": "--out"}


def flag_of(name: str) -> str:
    """The CLI flag of a :class:`TokenizeConfig` field."""
    return FLAGS.get(name, "--" + name.replace("_", "-"))


def _option(name: str, field: Any) -> inspect.Parameter:
    flag = flag_of(name)
    ann = field.annotation
    base = next((a for a in getattr(ann, "__args__", ()) if a is not type(None)), ann)
    if base is bool:
        kind, decls = bool | None, [f"{flag}/--no-{flag[2:]}"]
    elif getattr(ann, "__origin__", None) is list:
        kind, decls = list[str], [flag]  # repeatable: --input a --input b
    elif base is int:
        kind, decls = int | None, [flag]
    else:  # str, Literal choices (validated by the model)
        kind, decls = str | None, [flag]
    default = field.get_default()
    help_text = field.description or ""
    if not field.is_required() and default is not None:
        help_text += f" (default: {str(default).lower() if isinstance(default, bool) else default})"
    required = field.is_required()
    option = typer.Option(... if required else None, *decls, help=help_text, show_default=False,
                          metavar="URI" if kind == list[str] else None)
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=kind)


def _address_option() -> inspect.Parameter:
    # Where to run is not an option of the job (the same config runs anywhere): the command's own.
    option = typer.Option(None, "--address", envvar="RAY_ADDRESS",
                          help="Ray cluster to join (default: RAY_ADDRESS, else a local one)")
    return inspect.Parameter("address", inspect.Parameter.KEYWORD_ONLY, default=option, annotation=str | None)


def config_from_flags(values: dict[str, Any]) -> TokenizeConfig:
    """The flags given (``None``: not given) as a validated config; ConfigError naming the flags."""
    from pydantic import ValidationError

    from common.config import validation_lines
    from common.errors import ConfigError

    given = {k: v for k, v in values.items() if v is not None}
    try:
        return TokenizeConfig.model_validate(given)
    except ValidationError as e:
        raise ConfigError("; ".join(_as_flag(line) for line in validation_lines(e))) from None


def _as_flag(line: str) -> str:
    """``unit_rows: ...`` -> ``--unit-rows: ...``: the problem named as the user typed it."""
    key, sep, rest = line.partition(":")
    field, dot, tail = key.partition(".")
    if sep and field in TokenizeConfig.model_fields:
        return f"{flag_of(field)}{dot}{tail}{sep}{rest}"
    return line


def tokenize_command(**values: Any) -> None:
    """Encode curated shards with a trained tokenizer into RSDB token shards (resumable)."""
    from common.cluster import connect_ray
    from common.errors import TrinityError

    from .tokenize_job import check_tokenizer_dir, tokenize_to_shards

    address = values.pop("address")
    try:
        cfg = config_from_flags(values)
        check_tokenizer_dir(cfg.tokenizer)  # before Ray starts: a typo should not cost a cluster start
        connect_ray(address)
        summary = tokenize_to_shards(cfg)
    except TrinityError as exc:
        console.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(2)
    _print_summary(summary)


tokenize_command.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
    [_option(name, field) for name, field in TokenizeConfig.model_fields.items()] + [_address_option()])
tokenize_command.__annotations__ = {}  # typer reads the signature above, not these


def _print_summary(summary: Any) -> None:
    table = Table(title=f"Tokenized into {summary.out_dir}")
    for col in ("source", "docs", "tokens"):
        table.add_column(col, justify="left" if col == "source" else "right")
    for src, tokens in summary.tokens_per_source.items():
        table.add_row(src, f"{summary.docs_per_source[src]:,}", f"{tokens:,}")
    table.add_row("[b]total", f"{sum(summary.docs_per_source.values()):,}", f"[b]{summary.tokens:,}")
    console.print(table)
    langs = ", ".join(f"{k}={v:,}" for k, v in list(summary.tokens_per_lang.items())[:12])
    console.print(f"tokens per language: {langs}")
    console.print(
        f"{summary.rows:,} rows, {summary.rejected:,} rejected, {summary.units_total} units "
        f"({summary.units_skipped} already done), {summary.seconds:.1f}s, "
        f"{summary.tokens / max(summary.seconds, 1e-9):,.0f} tokens/s"
    )
