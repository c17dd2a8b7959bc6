"""Command-line entry points of the `tokenizer` package: train, eval, encode.

    trinity-data tokenizer train --input ../shared/corpus/demo.jsonl.zst --vocab-size 8192 --out out/tok
    trinity-data tokenizer eval --tokenizer out/tok --input ../shared/corpus/demo.jsonl.zst \\
        --split heldout --holdout-fraction 0.05
    trinity-data tokenizer encode --tokenizer out/tok "The price is 1234567!"
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import List, Optional

import typer

app = typer.Typer(help="Train, evaluate and try byte-level BPE tokenizers.", no_args_is_help=True)


def _fail(msg: str) -> None:
    typer.secho(f"error: {msg}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def _weights(items: list[str]) -> tuple[dict[str, float], dict[str, float]]:
    langs: dict[str, float] = {}
    sources: dict[str, float] = {}
    for item in items:
        key, sep, value = item.partition("=")
        kind, sep2, name = key.partition(":")
        if not sep or not sep2 or kind not in ("lang", "source") or not name:
            _fail(f"--weight {item!r}: expected lang:CODE=W or source:NAME=W (e.g. lang:en=0.5)")
        try:
            w = float(value)
        except ValueError:
            _fail(f"--weight {item!r}: {value!r} is not a number")
        (langs if kind == "lang" else sources)[name] = w
    return langs, sources


@app.command()
def train(
    input: List[str] = typer.Option(..., "--input", "-i", help="file, folder or glob; local or fsspec URI; repeatable"),
    out: Path = typer.Option(..., "--out", "-o", help="output folder (tokenizer.json + transformers files + report)"),
    vocab_size: int = typer.Option(200_000, "--vocab-size", help="exact final vocabulary size, special tokens included"),
    pretokenizer: str = typer.Option(
        "trinity",
        help="trinity (ours: Han+Hiragana+Katakana one script class), trinity_strict "
        "(the same with Han, Hiragana and Katakana apart) or gpt4o (the o200k regex baseline)",
    ),
    min_frequency: int = typer.Option(2, help="never merge a pair seen fewer times"),
    max_token_length: Optional[int] = typer.Option(None, help="longest token, in bytes"),
    max_bytes: Optional[int] = typer.Option(None, help="stop reading after this many bytes of text"),
    holdout_fraction: float = typer.Option(0.0, help="fraction of documents kept out (by id hash) for eval"),
    seed: int = typer.Option(0, help="seed of the sampling / held-out hash"),
    weight: List[str] = typer.Option([], "--weight", help="sampling weight, lang:CODE=W or source:NAME=W; repeatable"),
    route: str = typer.Option(
        "direct", help="direct (stream text to the trainer), counts (parallel pre-token counts in memory) or "
        "sharded (corpora larger than memory: counts spilled to disk, merged, pruned to --max-memory)",
    ),
    backend: str = typer.Option("processes", help="counts route: processes or ray"),
    workers: int = typer.Option(2, help="counts/sharded routes: parallel counting workers"),
    min_count: int = typer.Option(1, help="counts/sharded routes: drop pre-tokens seen fewer times"),
    max_words: Optional[int] = typer.Option(None, help="counts/sharded routes: keep at most this many distinct pre-tokens"),
    max_memory: Optional[str] = typer.Option(None, help="sharded route: memory budget, e.g. 8GB (plans units, prunes)"),
    work_dir: Optional[str] = typer.Option(None, help="sharded route: count runs folder (default OUT/_counts); "
                                           "rerun with it to resume"),
    unit_bytes: Optional[int] = typer.Option(None, help="sharded route: text per counting unit (default from the budget)"),
    keep_counts: bool = typer.Option(False, help="sharded route: keep the count runs after success"),
    text_field: str = typer.Option("text", help="text column / JSON key"),
    lang_field: str = typer.Option("lang", help="language column / JSON key"),
    source_field: str = typer.Option("source", help="source column / JSON key"),
    progress: bool = typer.Option(True, help="progress bars"),
) -> None:
    """Train a byte-level BPE tokenizer and write it to OUT."""
    from common.errors import TrinityError

    from . import TrainConfig
    from . import train as run_train

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    langs, sources = _weights(weight)
    try:
        cfg = TrainConfig.parse(
            inputs=list(input), vocab_size=vocab_size, pretokenizer=pretokenizer, min_frequency=min_frequency,
            max_token_length=max_token_length, max_bytes=max_bytes, holdout_fraction=holdout_fraction, seed=seed,
            lang_weights=langs, source_weights=sources, route=route, backend=backend, workers=workers,
            min_count=min_count, max_words=max_words, max_memory=max_memory, work_dir=work_dir,
            unit_bytes=unit_bytes, keep_counts=keep_counts, text_field=text_field, lang_field=lang_field,
            source_field=source_field,
        )
        from .corpus import list_files

        list_files(cfg.inputs)  # bad inputs fail here, before any work
        from pipeline._lock import OutputLock

        with OutputLock(str(out), job="tokenizer train"):  # one trainer per output folder
            result = run_train(cfg, out_dir=out, progress=progress)
    except TrinityError as exc:
        _fail(str(exc))
    r = result.report
    inp = r["input"]
    typer.echo(
        f"trained {r['vocab_reached']:,} / {r['vocab_size']:,} tokens from {inp['docs']:,} docs "
        f"({r['input_bytes'] / 1e6:.1f} MB, {inp['heldout_docs']:,} held out) in {r['seconds']:.1f}s, "
        f"peak RSS {r['peak_rss_mb']:.0f} MB -> {out}"
    )
    c = r.get("counts") or {}
    if cfg.route == "sharded":
        budget = f", budget {c['max_memory_mb'] / 1e3:.1f} GB {'kept' if c['within_budget'] else 'EXCEEDED'}" \
            if "max_memory_mb" in c else ""
        typer.echo(
            f"sharded: {c['units']} units ({c['units_resumed']} resumed), {c['distinct']:,} distinct pre-tokens, "
            f"kept {c['kept_distinct']:,} ({c['kept_mass_fraction']:.2%} of the count mass), "
            f"peak memory {c['peak_rss_tree_mb'] / 1e3:.2f} GB with workers{budget}"
        )
    if inp["rejected_rows"] or inp["rejected_files"]:
        typer.secho(
            f"skipped {inp['rejected_rows']} rows and {inp['rejected_files']} files: {inp['reasons']} "
            f"(examples in {out / 'train_report.json'})",
            fg=typer.colors.YELLOW, err=True,
        )
    if r["vocab_reached"] < r["vocab_size"]:
        typer.secho("warning: the corpus is too small for the requested vocabulary", fg=typer.colors.YELLOW, err=True)


@app.command("eval")
def eval_cmd(
    tokenizer: List[str] = typer.Option([], "--tokenizer", "-t", help="folder or tokenizer.json; repeatable"),
    input: List[str] = typer.Option(..., "--input", "-i", help="evaluation text (same formats as train)"),
    openai: List[str] = typer.Option(
        ["o200k_base", "cl100k_base"], "--openai", help="OpenAI encodings to compare (bpe-openai); repeatable"
    ),
    no_openai: bool = typer.Option(False, "--no-openai", help="skip the OpenAI encodings"),
    split: str = typer.Option("all", help="all, heldout or train (same hash as train's --holdout-fraction)"),
    holdout_fraction: float = typer.Option(0.0, help="as given to train"),
    seed: int = typer.Option(0, help="as given to train"),
    max_bytes: Optional[int] = typer.Option(None, help="evaluate on at most this many bytes"),
    by: List[str] = typer.Option(["lang", "source", "script"], "--by", help="lang, source or script; repeatable"),
    as_json: bool = typer.Option(False, "--json", help="print the result as one JSON object"),
) -> None:
    """Bytes per token and place-aligned digit groups, side by side."""
    from common.errors import TrinityError

    from .config import CorpusConfig
    from .corpus import ReadStats, iter_docs
    from .evaluate import HFCandidate, OpenAICandidate, evaluate

    for b in by:
        if b not in ("lang", "source", "script"):
            _fail(f"--by {b!r}: expected lang, source or script")
    try:
        cands = []
        names = set()
        for t in tokenizer:
            c = HFCandidate(t)
            if c.name in names:
                c.name = t
            names.add(c.name)
            cands.append(c)
        if not no_openai:
            cands += [OpenAICandidate(n) for n in openai]
        if not cands:
            _fail("nothing to evaluate: give --tokenizer and/or --openai")
        cfg = CorpusConfig(inputs=list(input), holdout_fraction=holdout_fraction, seed=seed, max_bytes=max_bytes)
        stats = ReadStats()
        result = evaluate(cands, iter_docs(cfg, split, stats), by=tuple(by))
    except TrinityError as exc:
        _fail(str(exc))
    if as_json:
        typer.echo(json.dumps(result))
        return
    _print_eval(result)


def _print_eval(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    names = result["tokenizers"]
    console = Console()
    for b, rows in result["groups"].items():
        table = Table(title=f"bytes per token by {b} (higher is better)")
        table.add_column(b)
        table.add_column("MB", justify="right")
        for n in names:
            table.add_column(n, justify="right")
        for key, row in [*rows.items(), ("ALL", result["overall"])]:
            best = max(v for v in row["bytes_per_token"].values() if v)
            cells = [
                f"[bold]{v:.3f}[/bold]" if v == best else f"{v:.3f}" for v in (row["bytes_per_token"][n] for n in names)
            ]
            table.add_row(key, f"{row['bytes'] / 1e6:.2f}", *cells)
        console.print(table)
    ov = result["overall"]
    table = Table(title=f"place-aligned digit groups ({ov['digit_groups']:,} groups)")
    for n in names:
        table.add_column(n, justify="right")
    table.add_row(*[f"{ov['digit_aligned'][n]:.1%}" if ov["digit_aligned"][n] is not None else "-" for n in names])
    console.print(table)


@app.command()
def encode(
    tokenizer: str = typer.Option(..., "--tokenizer", "-t", help="folder or tokenizer.json"),
    text: Optional[str] = typer.Argument(None, help="text to encode (default: --file or stdin)"),
    file: Optional[Path] = typer.Option(None, "--file", "-f", help="encode this file's bytes (any bytes)"),
    ids_only: bool = typer.Option(False, "--ids", help="print only the ids, space-separated"),
) -> None:
    """Show how TEXT (or a file, or stdin) is tokenized: ids and the bytes of each token."""
    from common.errors import TrinityError

    from . import decode_bytes, encode_bytes, load

    try:
        tok = load(tokenizer)
    except TrinityError as exc:
        _fail(str(exc))
    if text is not None:
        data = text.encode("utf-8")
    elif file is not None:
        try:
            data = file.read_bytes()
        except OSError as exc:
            _fail(f"{file}: {exc.strerror}")
    else:
        data = sys.stdin.buffer.read()
    ids = encode_bytes(tok, data)
    if ids_only:
        typer.echo(" ".join(map(str, ids)))
        return
    for i in ids:
        piece = decode_bytes(tok, [i])
        try:
            shown = repr(piece.decode("utf-8"))
        except UnicodeDecodeError:
            shown = repr(piece)
        typer.echo(f"{i:>7}  {shown}")
    typer.echo(f"{len(ids)} tokens, {len(data)} bytes, {len(data) / max(1, len(ids)):.2f} bytes/token")
