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
    for w in plan.warnings:
        console.print(f"[yellow]warning:[/] {w}")


@app.command()
def plan(
    mixture: str = typer.Argument(..., help="mixture YAML (local path or fsspec URI)"),
    json_out: Optional[Path] = typer.Option(None, "--json", help="also write the plan as JSON here"),
) -> None:
    """Read the sources' manifests and print target/available tokens and epochs per phase and source.

    Refuses (exit 1) a plan whose sources are empty or would need more than max_epochs repeats.
    Only manifests are read, so a 10T/4T/3T plan is checked without touching data.
    """
    from .mixture import load_mixture, plan_mixture

    try:
        result = plan_mixture(load_mixture(mixture))
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
