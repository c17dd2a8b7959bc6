"""`trinity-data rsdb ...`: token shards and the loader from the command line."""

from __future__ import annotations

import typer

app = typer.Typer(help="Token shards and the RSDB loader.", no_args_is_help=True)


@app.command()
def version() -> None:
    """Print the compiled core's version."""
    from rsdb import _core

    typer.echo(f"rsdb core state version {_core.core_version()}")
