"""`trinity-data mix ...`: plan a phase mixture and report achieved shares."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from .errors import TrinityError

app = typer.Typer(help="Plan phase mixtures and report achieved shares.", no_args_is_help=True)
console = Console()


def _fail(exc: Exception) -> None:
    console.print(f"[bold red]error:[/] {exc}")
    raise typer.Exit(2)


def print_plan(plan) -> None:
    from .mixture import format_tokens

    table = Table(title=f"Mixture plan: {plan.mixture.name} ({format_tokens(plan.mixture.total_tokens)} tokens)")
    for col in ("phase", "source", "share", "target", "available", "epochs (phase)", "epochs (cum.)", "flag"):
        table.add_column(col, justify="left" if col in ("phase", "source", "flag") else "right")
    for r in plan.rows:
        style = "red" if r.flag in ("REFUSED", "EMPTY") else ("yellow" if r.flag else None)
        table.add_row(
            r.phase, r.source, f"{100 * r.share:.1f}%", format_tokens(r.target_tokens),
            format_tokens(r.available_tokens), f"{r.epochs_in_phase:.2f}", f"{r.cumulative_epochs:.2f}", r.flag,
            style=style,
        )
    console.print(table)
    if plan.steps:
        steps = Table(title="Global steps per phase (batch shape from the schedule)")
        for col in ("phase", "first step", "steps", "tokens", "batch_size x seq_len from step"):
            steps.add_column(col, justify="left" if col in ("phase", "batch_size x seq_len from step") else "right")
        for r in plan.steps:
            shapes = ", ".join(f"{b} x {s} from {g:,}" for g, b, s in r["shapes"])
            steps.add_row(r["phase"], f"{r['first_step']:,}", f"{r['steps']:,}", format_tokens(r["tokens"]), shapes)
        console.print(steps)
    for w in plan.warnings:
        console.print(f"[yellow]warning:[/] {w}")


@app.command()
def plan(
    mixture: str = typer.Argument(..., help="mixture YAML (local path or fsspec URI)"),
    json_out: Optional[Path] = typer.Option(None, "--json", help="also write the plan as JSON here"),
    world_size: int = typer.Option(1, min=1, help="data-parallel ranks, for the steps per phase"),
    batch_size: int = typer.Option(8, min=1, help="rows per rank and step before any schedule entry"),
    seq_len: int = typer.Option(8192, min=1, help="sequence length before any schedule entry"),
) -> None:
    """Read the sources' manifests and print target/available tokens and epochs per phase and source,
    and the global steps of every phase with the batch shapes of the schedule.

    Refuses (exit 1) a plan whose sources are empty or would need more than max_epochs repeats.
    Only manifests are read, so a 10T/4T/3T plan is checked without touching data.
    """
    from .mixture import load_mixture, plan_mixture, plan_steps

    try:
        m = load_mixture(mixture)
        result = plan_mixture(m)
        result.steps = plan_steps(m, world_size=world_size, batch_size=batch_size, seq_len=seq_len)
    except TrinityError as exc:
        _fail(exc)
    print_plan(result)
    if json_out:
        json_out.write_text(json.dumps(result.to_dict(), indent=2))
    if not result.ok:
        console.print("[bold red]plan refused:[/]")
        for p in result.problems:
            console.print(f"  - {p}")
        raise typer.Exit(1)
    console.print("[green]plan ok[/]")


@app.command()
def report(
    mixture: str = typer.Argument(..., help="mixture YAML"),
    out: Path = typer.Option(Path("out/mix-report"), help="folder for shares.json and shares.png"),
    state: Optional[Path] = typer.Option(None, help="a saved loader state_dict or stats() JSON instead of a dry run"),
    seq_len: int = typer.Option(8192, help="sequence length of the dry run"),
    batch_size: int = typer.Option(8, help="rows per batch of the dry run"),
    world_size: int = typer.Option(1, help="simulate this many ranks (rank 0 is streamed)"),
    buffer_docs: int = typer.Option(1024, help="RSDB pool size"),
    seed: int = typer.Option(0),
    steps: Optional[int] = typer.Option(None, help="stop the dry run after this many steps (default: all phases)"),
    start_phase: Optional[str] = typer.Option(None, help="begin at this phase"),
    max_deviation: Optional[float] = typer.Option(None, help="exit 1 if any share is off by more (percentage points)"),
) -> None:
    """Achieved vs target token shares per phase, from a loader state or a dry run (no trainer)."""
    from tqdm import tqdm

    from .mixture import load_mixture, loader_from_mixture
    from .mixture_report import compare_shares, max_deviation_pp, plot_shares

    try:
        m = load_mixture(mixture)
        kwargs = dict(seq_len=seq_len, batch_size=batch_size, world_size=world_size, buffer_docs=buffer_docs,
                      seed=seed, start_phase=start_phase)
        if state is not None:
            saved = json.loads(state.read_text())
            if "tokens_per_phase" in saved:
                stats = saved
            else:
                loader = loader_from_mixture(m, **kwargs)
                loader.load_state_dict(saved)
                stats = loader.stats()
        else:
            loader = loader_from_mixture(m, fields=("tokens", "source_ids"), **kwargs)
            total = len(loader) if steps is None else min(steps, len(loader))
            for _ in tqdm(zip(range(total), loader), total=total, desc="dry run", unit="step"):
                pass
            stats = loader.stats()
    except TrinityError as exc:
        _fail(exc)
    rows = compare_shares(m, stats["tokens_per_phase"])
    table = Table(title=f"Mixture {m.name}: achieved vs target")
    for col in ("phase", "source", "target", "achieved", "deviation (pp)", "tokens"):
        table.add_column(col, justify="left" if col in ("phase", "source") else "right")
    for r in rows:
        table.add_row(r.phase, r.source, f"{100 * r.target_share:.2f}%", f"{100 * r.achieved_share:.2f}%",
                      f"{r.deviation_pp:+.2f}", f"{r.achieved_tokens:,}")
    console.print(table)
    if stats.get("epochs"):
        console.print("epochs per source: " + ", ".join(f"{k}={v:.2f}" for k, v in stats["epochs"].items()))
    worst = max_deviation_pp(rows)
    console.print(f"largest deviation: {worst:.2f} percentage points")
    out.mkdir(parents=True, exist_ok=True)
    (out / "shares.json").write_text(json.dumps(
        {"stats": stats, "rows": [dict(r.__dict__, deviation_pp=r.deviation_pp) for r in rows]}, indent=2))
    png = plot_shares(rows, out / "shares.png", title=f"{m.name}: target (hatched) vs achieved")
    console.print(f"wrote {out / 'shares.json'} and {png}")
    if max_deviation is not None and worst > max_deviation:
        raise typer.Exit(1)
