"""`trinity-data diagnose ...` end to end through the root CLI."""

from __future__ import annotations

import numpy as np
from typer.testing import CliRunner

from jobs.cli import app
from rsdb.diagnostics import BHTracker
from rsdb.diagnostics.plots import describe_png

runner = CliRunner()


def _write_run(path, run, spread):
    with BHTracker(path, run=run) as t:
        for step in range(30):
            t.log_step([3.0 - step * 0.01 + spread * ((i * 7 + step) % 4) for i in range(4)])


def test_diagnose_plot(tmp_path):
    a, b = tmp_path / "seq.jsonl", tmp_path / "rsdb.jsonl"
    _write_run(a, "sequential", 0.3)
    _write_run(b, "rsdb", 0.02)
    res = runner.invoke(app, ["diagnose", "plot", str(a), str(b), "--out", str(tmp_path / "cmp.png")])
    assert res.exit_code == 0, res.output
    assert "sequential" in res.output and "rsdb" in res.output and "BH mean" in res.output
    assert describe_png(tmp_path / "cmp.png")["width"] > 500
    # default output path: next to the first run
    res = runner.invoke(app, ["diagnose", "plot", str(a)])
    assert res.exit_code == 0, res.output
    assert describe_png(tmp_path / "seq.png")


def test_diagnose_plot_bad_file(tmp_path):
    p = tmp_path / "broken.jsonl"
    p.write_text('{"type": "meta", "run": "x"}\n{oops\n')
    res = runner.invoke(app, ["diagnose", "plot", str(p)])
    assert res.exit_code == 2
    assert "broken.jsonl:2" in res.output and "not JSON" in res.output


def test_diagnose_loader_rejects_missing_path(tmp_path):
    res = runner.invoke(app, ["diagnose", "loader", str(tmp_path / "nothing")])
    assert res.exit_code == 2
    assert "not found" in res.output
