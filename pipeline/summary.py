"""The end-of-run summary table (rich): docs and bytes in/out per stage, rejection reasons, throughput."""

from __future__ import annotations

import sys
from typing import Any

from pipeline.layout import REJECTED, run_folder


def _mb(n: int) -> str:
    return f"{n / 1e6:,.2f}"


def summary_rows(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per stage, with throughput; what the table shows, for programmatic use."""
    rows = []
    for s in manifest["stages"]:
        secs = s.get("seconds") or 0.0
        rows.append({**s, "mb_per_s": (s["bytes_in"] / 1e6 / secs) if secs > 0 else None})
    return rows


def print_summary(result: Any, output: str) -> None:
    """Print the run summary (called by the CLI, never by library code)."""
    from rich.console import Console
    from rich.table import Table

    m = result.manifest
    console = Console(width=None if sys.stdout.isatty() else 160)
    table = Table(title=f"curation summary: {output}", show_lines=False)
    for col, just in (("stage", "left"), ("docs in", "right"), ("kept", "right"), ("rejected", "right"),
                      ("MB in", "right"), ("MB out", "right"), ("MB/s", "right"), ("top rejection reasons", "left")):
        table.add_column(col, justify=just)  # type: ignore[arg-type]
    for s in summary_rows(m):
        reasons = ", ".join(f"{r} {n:,}" for r, n in list(s["reasons"].items())[:4])
        table.add_row(s["stage"], f"{s['docs_in']:,}", f"{s['docs_kept']:,}", f"{s['docs_rejected']:,}",
                      _mb(s["bytes_in"]), _mb(s["bytes_out"]),
                      f"{s['mb_per_s']:.1f}" if s["mb_per_s"] else "-", reasons)
    console.print(table)
    acc = m["accounting"]
    status = "[green]ok[/green]" if acc["ok"] else f"[red]FAILED: {acc['problems']}[/red]"
    console.print(f"kept {m['rows']:,} docs in {len(m['shards'])} shard(s), {_mb(m['bytes'])} MB on disk "
                  f"({_mb(m['text_bytes'])} MB text); rejected {m['rejected']['rows']:,} "
                  f"({run_folder(output)}/{REJECTED}/); accounting {status}")
    if result.already_complete:
        console.print("already complete for this config: nothing to do")
    elif result.seconds:
        mbs = m["stages"][0]["bytes_in"] / 1e6 / result.seconds if m["stages"] else 0
        console.print(f"wall time {result.seconds:.1f}s ({mbs:.2f} MB/s input); "
                      f"{result.units_skipped} of {result.units_total} units reused from an earlier run")
