"""The one `trinity-data` command: each package contributes its own sub-app.

Sub-app modules keep heavy imports (ray, torch, tokenizers) inside their
commands, so `trinity-data --help` stays fast.
"""

from __future__ import annotations

import typer

from pipeline.cli import app as pipeline_app
from pipeline.rephrase.cli import app as rephrase_app
from pipeline.cli import curate
from rsdb.cli import app as rsdb_app
from rsdb.diagnostics.cli import app as diagnose_app
from rsdb.mixture_cli import app as mix_app
from tokenizer.cli import app as tokenizer_app
from tokenizer.tokenize_cli import tokenize_command

app = typer.Typer(
    name="trinity-data",
    help="Pretraining data pipeline: curate, train a tokenizer, tokenize, mix and load.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
app.add_typer(rsdb_app, name="rsdb")
app.add_typer(tokenizer_app, name="tokenizer")
app.add_typer(pipeline_app, name="pipeline")
app.add_typer(mix_app, name="mix")
app.add_typer(rephrase_app, name="rephrase")
app.add_typer(diagnose_app, name="diagnose")
app.command("tokenize")(tokenize_command)
app.command("curate")(curate)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
