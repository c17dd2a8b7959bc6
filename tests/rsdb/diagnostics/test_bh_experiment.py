"""The BH experiment end to end at toy size: data prep, both packings, table, JSON, PNGs."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "benchmarks"))


def _corpus(path: Path) -> Path:
    import zstandard

    rng = np.random.default_rng(0)
    words = ["alpha", "beta", "gamma", "delta", "def", "return", "func", "println", "le", "der"]
    lines = []
    for i in range(60):
        n = int(rng.integers(50, 400))
        text = " ".join(rng.choice(words, n))
        lines.append(json.dumps({"id": f"d{i}", "text": text, "source": ("code", "prose")[i % 2], "lang": "en"}))
    path.write_bytes(zstandard.ZstdCompressor().compress(("\n".join(lines) + "\n").encode()))
    return path


def test_experiment_runs_both_packings(tmp_path, capsys):
    import bh_experiment

    corpus = _corpus(tmp_path / "toy.jsonl.zst")
    out = tmp_path / "bh"
    rc = bh_experiment.main(["--corpus", str(corpus), "--out", str(out), "--steps", "4", "--d-model", "32",
                             "--layers", "1", "--heads", "2", "--seq-len", "32", "--micro-batch-size", "2",
                             "--micro-batches", "3", "--eval-rows", "4", "--buffer-docs", "8", "--threads", "1"])
    assert rc == 0
    printed = capsys.readouterr().out
    lines = [json.loads(x) for x in printed.splitlines() if x.startswith("{")]
    assert [x["packing"] for x in lines] == ["sequential", "rsdb"]
    assert "BH mean" in printed and "rsdb / sequential" in printed
    res = json.loads((out / "bh_results.json").read_text())["results"]
    seq, rs = res
    for r in res:
        assert r["steps"] == 4 and np.isfinite(r["eval_loss"]) and r["bh_mean"] >= 0
        assert 0 <= r["loader_wait_frac"] < 1
        assert len(r["eval_curve"]) >= 1
    assert seq["tokens_seen"] == rs["tokens_seen"] == 4 * 3 * 2 * 32
    assert seq["params"] == rs["params"]
    for name in ("bh_experiment.png", "bh_loader_stats.png", "run-sequential.jsonl", "run-rsdb.jsonl"):
        assert (out / name).stat().st_size > 0
    # --report rebuilds the table and both figures from the saved runs, without training
    capsys.readouterr()
    assert bh_experiment.main(["--report", str(out), "--out", str(tmp_path / "merged")]) == 0
    printed = capsys.readouterr().out
    assert "rsdb / sequential" in printed and "sequential |" in printed
    for name in ("bh_experiment.png", "bh_loader_stats.png"):
        assert (tmp_path / "merged" / name).stat().st_size > 0
    # the byte-level shards are reused, not rewritten, by the next run
    from bh_data import prepare_byte_shards

    manifest = out / "data" / "bytes-v1" / "train" / "code" / "manifest.json"
    before = manifest.stat().st_mtime_ns
    sources, held_out = prepare_byte_shards(corpus, out / "data")
    assert manifest.stat().st_mtime_ns == before
    assert set(sources) == {"code", "prose"} and len(held_out) == 3  # every 25th of 60 documents


def test_experiment_rejects_bad_arguments(tmp_path):
    import bh_experiment

    with pytest.raises(SystemExit):
        bh_experiment.parse_args(["--packings", "random"])
    with pytest.raises(SystemExit, match="bh_results.json: not found"):
        bh_experiment.main(["--report", str(tmp_path), "--out", str(tmp_path / "o")])
    with pytest.raises(SystemExit, match="corpus not found"):
        bh_experiment.main(["--corpus", str(tmp_path / "none.jsonl.zst"), "--out", str(tmp_path)])
