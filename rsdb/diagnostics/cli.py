"""`trinity-data diagnose ...`: loader-side BH statistics and tracker-run plots."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table

from ..errors import TrinityError

app = typer.Typer(help="Batch-heterogeneity diagnostics: loader statistics and training-run plots.",
                  no_args_is_help=True)
console = Console()


def _fail(msg: str) -> None:
    console.print(f"[bold red]error:[/] {msg}", soft_wrap=True)
    raise typer.Exit(2)


def resolve_sources(paths: List[str]) -> dict[str, str]:
    """``NAME=PATH`` or ``PATH`` items -> source name -> shard location.

    A PATH with a ``manifest.json`` is one source named after the folder; a PATH
    whose subfolders hold manifests (the tokenize job's per-source output) adds one
    source per subfolder; a Megatron prefix (``PATH.idx`` exists) is one source.
    """
    sources: dict[str, str] = {}

    def add(name: str, loc: str) -> None:
        if name in sources:
            _fail(f"two sources are named {name!r} ({sources[name]} and {loc}); name them with NAME=PATH")
        sources[name] = loc

    for item in paths:
        name, sep, loc = item.partition("=")
        if not sep:
            name, loc = "", item
        p = Path(loc)
        if (p / "manifest.json").is_file() or Path(loc + ".idx").is_file():
            add(name or p.name, loc)
        elif p.is_dir():
            subs = sorted(m.parent for m in p.glob("*/manifest.json"))
            if not subs:
                _fail(f"{loc}: no manifest.json in it or its subfolders (not RSDB token shards)")
            if name:
                _fail(f"{item}: NAME=PATH needs PATH to be one shard folder, but {loc} holds {len(subs)} sources")
            for s in subs:
                add(s.name, str(s))
        else:
            _fail(f"{loc}: not found (expected a token shard folder or a Megatron prefix)")
    return sources


def _fmt(x: float) -> str:
    return f"{x:,.3f}" if abs(x) < 100 else f"{x:,.0f}"


@app.command("loader")
def loader_command(
    paths: List[str] = typer.Argument(..., help="token shard folders (NAME=PATH to name a source)"),
    packing: List[str] = typer.Option(["sequential", "rsdb"], "--packing",
                                      help="packing to measure; repeat to compare (rsdb, sequential)"),
    steps: int = typer.Option(50, min=1, help="optimizer steps to sample"),
    micro_batches: int = typer.Option(4, "--micro-batches", min=1, help="microbatches per step"),
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="rows per microbatch"),
    seq_len: int = typer.Option(2048, "--seq-len", min=1, help="tokens per row"),
    buffer_docs: int = typer.Option(1024, "--buffer-docs", min=1, help="RSDB document buffer"),
    seed: int = typer.Option(0, help="loader seed"),
    out: Path = typer.Option(Path("out/diagnose"), help="folder for loader_stats.png and loader_stats.json"),
) -> None:
    """Per-microbatch document/source statistics of each packing, before any training."""
    import rsdb

    from .loader_stats import LoaderStats
    from .plots import plot_loader_stats

    bad = [p for p in packing if p not in ("rsdb", "sequential")]
    if bad:
        _fail(f"--packing: unknown value(s) {bad}; use rsdb and/or sequential")
    sources = resolve_sources(paths)
    collected: dict[str, LoaderStats] = {}
    try:
        for p in dict.fromkeys(packing):
            loader = rsdb.RSDBLoader(sources, seq_len=seq_len, batch_size=batch_size, buffer_docs=buffer_docs,
                                     seed=seed, packing=p)
            ls = LoaderStats(micro_per_step=micro_batches, source_names=loader.source_names)
            console.print(f"[dim]{p}: sampling {steps} steps x {micro_batches} microbatches x "
                          f"{batch_size}x{seq_len} tokens[/]")
            ls.collect(loader, steps, progress=True)
            collected[p] = ls
    except TrinityError as exc:
        _fail(str(exc))

    summaries = {p: s.summary() for p, s in collected.items()}
    table = Table(title=f"Loader microbatch statistics ({len(sources)} sources, {steps} steps x {micro_batches} "
                        f"microbatches of {batch_size}x{seq_len})")
    table.add_column("statistic (per microbatch)", no_wrap=True)
    for p in collected:
        table.add_column(f"{p} mean", justify="right")
        table.add_column(f"{p} p95", justify="right")
    rows = [
        ("distinct documents", "distinct_docs"),
        ("largest document share", "max_doc_share"),
        ("source-mix entropy (bits)", "source_entropy"),
        ("mean position_ids", "mean_doc_position"),
        ("unigram token entropy (bits)", "token_entropy"),
        ("step entropy heterogeneity (bits)", "entropy_heterogeneity"),
    ]
    for label, key in rows:
        cells = []
        for p in collected:
            d = summaries[p][key]
            cells += [_fmt(d["mean"]), _fmt(d["p95"])] if d else ["-", "-"]
        table.add_row(label, *cells)
    table.add_row("microbatches >50% one document",
                  *[c for p in collected for c in (f"{summaries[p]['dominated_frac']:.1%}", "")])
    console.print(table)
    out.mkdir(parents=True, exist_ok=True)
    png = plot_loader_stats(collected, out / "loader_stats.png")
    (out / "loader_stats.json").write_text(json.dumps({"sources": sources, "seq_len": seq_len,
                                                       "batch_size": batch_size, "micro_batches": micro_batches,
                                                       "steps": steps, "summaries": summaries}, indent=1))
    console.print(f"wrote {png} and {out / 'loader_stats.json'}")


@app.command("plot")
def plot_command(
    runs: List[Path] = typer.Argument(..., help="tracker JSONL files (one per run; overlaid)"),
    out: Optional[Path] = typer.Option(None, help="PNG path (default: next to the first run, .png)"),
    title: Optional[str] = typer.Option(None, help="figure title"),
) -> None:
    """Plot loss (spikes marked) and BH per step of one or more tracker runs, and print their summaries."""
    from .plots import plot_runs
    from .tracker import read_run

    try:
        logs = [read_run(p) for p in runs]
    except TrinityError as exc:
        _fail(str(exc))
    labelled = {}
    for lg in logs:
        label = lg.run if lg.run not in labelled else f"{lg.run} ({lg.path.stem})"
        labelled[label] = lg
    table = Table(title="Batch heterogeneity per run")
    table.add_column("run", no_wrap=True)
    for col in ("steps", "BH mean", "BH p95", "BH max", "spikes", "first loss", "final loss"):
        table.add_column(col, justify="right")
    for label, lg in labelled.items():
        s = lg.summary
        if not s.get("steps"):
            table.add_row(label, "0", "-", "-", "-", "-", "-", "-")
            continue
        table.add_row(label, str(s["steps"]), f"{s['bh_mean']:.4f}", f"{s['bh_p95']:.4f}", f"{s['bh_max']:.4f}",
                      str(s["n_spikes"]), f"{s['loss_first']:.4f}", f"{s['loss_final']:.4f}")
    console.print(table)
    png = plot_runs(labelled, out or runs[0].with_suffix(".png"), title=title)
    console.print(f"wrote {png}")
