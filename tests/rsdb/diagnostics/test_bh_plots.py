"""The PNG figures: valid files with the expected size, from records, RunLogs and JSONL paths."""

from __future__ import annotations

import numpy as np
import pytest

from rsdb.diagnostics import BHTracker, LoaderStats, SpikeRule, plot_loader_stats, plot_runs, read_run
from rsdb.diagnostics.plots import describe_png


def _run(path, scale, seed):
    rng = np.random.default_rng(seed)
    with BHTracker(path, run=path.stem, rule=SpikeRule(window=10, k=3.0, min_history=5)) as t:
        for step in range(60):
            base = 5.0 * np.exp(-step / 20) + 2.0
            micro = base + rng.normal(0, scale, 4)
            if step == 40:
                micro += 3.0  # one clear spike
            t.log_step(list(micro), extra={"eval_loss": base} if step % 10 == 9 else None)
    return path


def test_plot_runs_writes_png(tmp_path):
    seq = _run(tmp_path / "sequential.jsonl", 0.5, 0)
    rs = _run(tmp_path / "rsdb.jsonl", 0.05, 1)
    assert 40 in read_run(seq).summary["spike_steps"]
    out = plot_runs({"sequential": seq, "rsdb": read_run(rs)}, tmp_path / "figs" / "bh.png", title="test")
    info = describe_png(out)
    assert info["width"] > 500 and info["height"] > 400
    assert out.stat().st_size > 10_000


def test_tracker_plot_and_empty_run(tmp_path):
    t = BHTracker()
    for i in range(5):
        t.log_step([1.0 + i, 2.0 + i])
    describe_png(t.plot(tmp_path / "one.png"))
    describe_png(plot_runs({"empty": [], "one": t.records}, tmp_path / "two.png"))


def test_plot_loader_stats_writes_png(tmp_path, make_batch):
    a, b = LoaderStats(2, ["web", "code"]), LoaderStats(2, ["web", "code"])
    for _ in range(4):
        a.add(make_batch([[(1, 0, 9, 0)], [(1, 0, 9, 9)]]))
        b.add(make_batch([[(2, 0, 3, 0), (3, 1, 6, 0)], [(4, 1, 9, 0)]]))
    out = plot_loader_stats({"sequential": a, "rsdb": b}, tmp_path / "ls.png")
    assert describe_png(out)["width"] > 800


def test_describe_png_rejects_other_files(tmp_path):
    p = tmp_path / "x.png"
    p.write_bytes(b"GIF89a....................")
    with pytest.raises(ValueError, match="not a PNG"):
        describe_png(p)
