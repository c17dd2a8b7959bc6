"""``trinity-data rephrase``: style library, a dev OpenAI-compatible server, classifier training.

The stages themselves run from curate configs (``trinity-data curate``, ``python -m jobs.rephrase``);
these commands are the tools around them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import List, Optional

import typer

app = typer.Typer(help="Synthetic rephrasing and quality scoring tools.", no_args_is_help=True)


@app.command("styles")
def styles_command(
    style_file: List[Path] = typer.Option([], "--style-file", "-f", help="extra YAML style files"),
    show: Optional[str] = typer.Option(None, "--show", help="print one style's full prompt"),
) -> None:
    """List the prompt styles (built-in plus --style-file), or --show one."""
    from common.errors import ConfigError

    from .styles import StyleLibrary

    try:
        lib = StyleLibrary.load(style_file)
        if show:
            s = lib.get(show)
            typer.echo(f"{s.name} v{s.version} [{s.domain}] check_language={s.check_language} length_ratio={list(s.length_ratio)}")
            if s.system:
                typer.echo(f"--- system\n{s.system}")
            typer.echo(f"--- user\n{s.prompt}")
            return
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2)
    for s in lib:
        typer.echo(f"{s.name:24s} v{s.version:<3d} {s.domain:13s} {s.description}")


@app.command("serve")
def serve_command(
    model: Path = typer.Argument(..., help="a transformers model folder"),
    host: str = typer.Option("127.0.0.1", help="bind address"),
    port: int = typer.Option(8000, help="port (0: any free port)"),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
    api_key_env: Optional[str] = typer.Option(None, help="require the key in this environment variable"),
) -> None:
    """Serve a small transformers model over an OpenAI-compatible API (development; use `vllm serve` in production)."""
    from .engines import TransformersEngineConfig, build_engine
    from .serve import OpenAICompatServer

    key = os.environ.get(api_key_env) if api_key_env else None
    if api_key_env and not key:
        typer.echo(f"error: {api_key_env} is not set", err=True)
        raise typer.Exit(2)
    engine = build_engine(TransformersEngineConfig(model=str(model), device=device))
    server = OpenAICompatServer(engine, host=host, port=port, model_name=model.name, api_key=key)
    typer.echo(f"serving {model} at {server.base_url} (Ctrl-C stops)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


def _read_labelled(paths: List[Path], text_column: str, label_column: str):
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.json as pj
    import pyarrow.parquet as pq

    tables = []
    for p in paths:
        files = sorted(p.rglob("*.parquet")) + sorted(p.rglob("*.jsonl")) if p.is_dir() else [p]
        for f in files:
            if f.suffix == ".parquet":
                t = pq.read_table(f, columns=None)
            elif f.suffix in (".jsonl", ".json"):
                t = pj.read_json(f)
            else:
                raise typer.BadParameter(f"{f}: expected .parquet or .jsonl")
            for c in (text_column, label_column):
                if c not in t.column_names:
                    raise typer.BadParameter(f"{f}: no column {c!r} (columns: {t.column_names})")
            tables.append(t.select([text_column, label_column]))
    if not tables:
        raise typer.BadParameter("no input files found")
    t = pa.concat_tables(tables, promote_options="permissive")
    t = t.filter(pc.is_valid(t.column(label_column)))
    return t.column(text_column).to_pylist(), [float(x) for x in t.column(label_column).to_pylist()]


@app.command("train-classifier")
def train_classifier_command(
    inputs: List[Path] = typer.Argument(..., help="judge-scored Parquet/JSONL files or folders (kept and rejected/)"),
    out: Path = typer.Option(..., "--out", "-o", help="classifier file to write (.npz)"),
    text_column: str = typer.Option("text"),
    label_column: str = typer.Option("quality", help="the judge's 0-5 score column"),
    dim_bits: int = typer.Option(20, help="log2 of the hashed feature space"),
    ngram: int = typer.Option(2, help="longest word n-gram"),
    epochs: int = typer.Option(200),
    threshold: float = typer.Option(3.0, help="reported accuracy is at this threshold"),
) -> None:
    """Train the hashed n-gram quality classifier on an LLM judge's labels."""
    from rich.console import Console

    from .classifier import ClassifierError, HashedNgramClassifier

    console = Console(stderr=True)
    texts, labels = _read_labelled(inputs, text_column, label_column)
    console.print(f"training on {len(texts)} labelled documents")
    clf = HashedNgramClassifier(dim_bits=dim_bits, ngram=ngram)
    try:
        with console.status("fitting"):
            metrics = clf.fit(texts, labels, epochs=epochs, threshold=threshold)
    except ClassifierError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2)
    clf.save(out)
    typer.echo(json.dumps({"out": str(out), **metrics}))
