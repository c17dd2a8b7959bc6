"""Command-line entry points of the `pipeline` package: `trinity-data curate` and `trinity-data pipeline ...`."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import List, Optional

import typer

app = typer.Typer(help="Curation pipeline: validate configs, list stages, inspect runs.", no_args_is_help=True)


def _load(config: Path, sets: list[str] | None):
    from common.config import parse_overrides
    from pipeline.config import load_config
    from pipeline.errors import TrinityError

    try:  # --set VALUE is read as YAML, as in the job entrypoints (common.config)
        return load_config(config, parse_overrides(sets))
    except TrinityError as e:
        typer.secho(f"config error: {e}", fg="red", err=True)
        raise typer.Exit(2) from None


def curate(
    config: Path = typer.Option(..., "--config", "-c", help="curate YAML config"),
    sets: Optional[List[str]] = typer.Option(None, "--set", help="override a key, dotted; VALUE is read as YAML, e.g. --set output.path=out/x"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace a run of another config at output.path"),
    address: Optional[str] = typer.Option(None, "--address", envvar="RAY_ADDRESS",
                                          help="Ray cluster to join (default: RAY_ADDRESS, else ray.address "
                                               "from the config, else a local one)"),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="show Ray's own log lines and warnings"),
) -> None:
    """Run (or resume) a curation config: read, filter, dedup, write shards + manifest."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    cfg = _load(config, sets)
    if address:
        cfg.ray.address = address
    from pipeline.errors import TrinityError
    from pipeline.runner import run_pipeline
    from pipeline.summary import print_summary

    if not verbose:
        from pipeline.progress import quiet_ray

        quiet_ray()  # the progress bar, not Ray's log lines, is what a user reads

    typer.echo(f"curate: {len(cfg.input.paths)} input path(s) -> {cfg.output.path} "
               f"(stages: {', '.join(s.name for s in cfg.stages) or 'none'})")
    import ray

    ray_was_up = ray.is_initialized()  # a caller's Ray session (a notebook, a test) is not ours to stop
    try:
        result = run_pipeline(cfg, overwrite=overwrite)
    except TrinityError as e:
        typer.secho(f"error: {e}", fg="red", err=True)
        raise typer.Exit(1) from None
    finally:
        if ray.is_initialized() and not ray_was_up:
            ray.shutdown()
    print_summary(result, cfg.output.path)


@app.command("validate")
def validate(config: Path = typer.Argument(..., help="curate YAML config"),
             sets: Optional[List[str]] = typer.Option(None, "--set")) -> None:
    """Validate a config (every stage's options included, input paths exist) without running anything."""
    cfg = _load(config, sets)
    from pipeline.errors import TrinityError
    from pipeline.read import list_inputs

    try:
        files = list_inputs(cfg.input)  # paths, folders and globs resolve to at least one readable file
    except TrinityError as e:
        typer.secho(f"config error: {e}", fg="red", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"{config}: ok ({len(files)} input file(s); {len(cfg.stages)} stages: "
               f"{', '.join(s.name for s in cfg.stages)}; config hash {cfg.config_hash()[:12]})")


@app.command("stages")
def stages() -> None:
    """List registered stages and their options."""
    from pipeline.config import load_stage_plugins
    from pipeline.stages.base import STAGES, GlobalStage

    load_stage_plugins()
    for name in sorted(STAGES):
        cls = STAGES[name]
        kind = "global" if issubclass(cls, GlobalStage) else "batch"
        doc = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
        typer.echo(f"{name:<20} {kind:<7} {doc}")
        for fname, field in cls.Config.model_fields.items():
            typer.echo(f"    {fname} = {field.default!r}")


@app.command("summary")
def summary(output: str = typer.Argument(..., help="a curated output folder (manifest in OUT.curation/)")) -> None:
    """Print the summary table of a finished run from its manifest."""
    from pipeline.errors import PipelineError
    from pipeline.manifest import load_manifest
    from pipeline.runner import RunResult
    from pipeline.summary import print_summary

    try:
        m = load_manifest(output)
    except PipelineError as e:  # no manifest, or a wrong-typed field: named in the message
        typer.secho(str(e), fg="red", err=True)
        raise typer.Exit(1)
    assert m is not None
    units = m.input.units
    print_summary(RunResult(m.to_json(), 0.0, units, units, already_complete=True), output)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
