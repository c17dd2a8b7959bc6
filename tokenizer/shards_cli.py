"""`trinity-data tokenize`: curated shards -> RSDB token shards (a Ray Data job)."""

from __future__ import annotations

from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table

console = Console()


def tokenize_command(
    tokenizer: str = typer.Option(..., "--tokenizer", help="folder with tokenizer.json"),
    inputs: List[str] = typer.Option(..., "--input", help="curated Parquet/Arrow files, folders or globs (fsspec URIs)"),
    out: str = typer.Option(..., "--out", help="output folder for token shards (local)"),
    source: Optional[str] = typer.Option(None, "--source", help="fixed source name for every row"),
    source_field: Optional[str] = typer.Option(None, "--source-field", help="split output by this column instead"),
    text_field: str = typer.Option("text", help="column holding the text"),
    bos: bool = typer.Option(True, "--bos/--no-bos", help="prepend the tokenizer's bos token"),
    eos: bool = typer.Option(True, "--eos/--no-eos", help="append the tokenizer's eos token"),
    shard_tokens: int = typer.Option(1 << 26, help="target tokens per shard file"),
    fmt: str = typer.Option("rsdb", "--format", help="rsdb (token shards) or megatron (one .bin/.idx per source)"),
    unit_rows: int = typer.Option(20_000, help="rows per work unit: larger files are split into row ranges"),
    fast: bool = typer.Option(True, "--fast/--no-fast", help="encode with the tiktoken twin (same ids, faster)"),
    overwrite: bool = typer.Option(False, help="replace an output folder written with another tokenizer"),
    workers: Optional[int] = typer.Option(None, help="tokenizer workers (default: the cluster's CPUs)"),
    address: Optional[str] = typer.Option(None, "--address", envvar="RAY_ADDRESS",
                                          help="Ray cluster to join (default: RAY_ADDRESS, else a local one)"),
) -> None:
    """Encode curated shards with a trained tokenizer into RSDB token shards (resumable)."""
    from common.cluster import connect_ray
    from common.errors import TrinityError

    from .shards import TokenizeSpec, check_tokenizer_dir, tokenize_to_shards

    if source is None and source_field is None:
        source_field = "source"
    try:
        spec = TokenizeSpec(tokenizer_dir=tokenizer, out_dir=out, source=source, source_field=source_field,
                            text_field=text_field, add_bos=bos, add_eos=eos, shard_tokens=shard_tokens,
                            fast_encode=fast, format=fmt, unit_rows=unit_rows)
        check_tokenizer_dir(tokenizer)  # before Ray starts: a typo should not cost a cluster start
        connect_ray(address)
        summary = tokenize_to_shards(spec, inputs, num_workers=workers, overwrite=overwrite)
    except TrinityError as exc:
        console.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(2)
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
