"""The loader driven by a mixture file: shares, phase switches across ranks, start_phase, report."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import yaml

import rsdb
from rsdb.errors import ConfigError
from rsdb.mixture import load_mixture, loader_from_mixture


@pytest.fixture(scope="module")
def mixture_file(tmp_path_factory):
    root = tmp_path_factory.mktemp("mix")
    rng = np.random.default_rng(0)
    for s, (n_docs, vocab_lo) in {"web": (400, 10), "code": (300, 1000), "math": (200, 2000)}.items():
        docs = [rng.integers(vocab_lo, vocab_lo + 900, size=int(rng.lognormal(5, 1)) + 1) for _ in range(n_docs)]
        rsdb.write_shards(root / s, docs, source=s, shard_tokens=20_000)
    doc = {
        "name": "test-mix",
        "sources": {s: {"path": s} for s in ("web", "code", "math")},
        "phases": [
            {"name": "p1", "tokens": 60_000, "weights": {"web": 0.7, "code": 0.2, "math": 0.1}},
            {"name": "p2", "tokens": 30_000, "weights": {"web": 0.4, "code": 0.4, "math": 0.2}},
            {"name": "p3", "tokens": 20_000, "weights": {"web": 0.2, "code": 0.3, "math": 0.5}},
        ],
    }
    path = root / "mixture.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _phase_of_batches(loader):
    """The phase each batch belongs to, read from the loader's stats after each step."""
    phases = []
    for _ in loader:
        phases.append(loader.stats()["phase"])
    return phases


def test_shares_track_targets(mixture_file):
    # The pool must be small next to a phase: these phases are 20k-60k tokens, and a pool
    # holds the previous phase's mixture for about its own size in tokens after a switch.
    loader = loader_from_mixture(mixture_file, seq_len=256, batch_size=4, buffer_docs=8)
    steps = sum(1 for _ in loader)
    assert steps == len(loader) == -(-110_000 // (256 * 4))
    m = load_mixture(mixture_file)
    for phase in m.phases:
        got = loader.stats()["tokens_per_phase"][phase.name]
        total = sum(got.values())
        for src, share in phase.shares().items():
            assert abs(got.get(src, 0) / total - share) < 0.03, (phase.name, src, got)


@pytest.mark.parametrize("world_size", [1, 2, 4])
def test_phase_switch_at_global_token_boundary(mixture_file, world_size):
    seq, bs = 128, 2
    per_step = seq * bs * world_size
    expected = {}
    for rank in range(world_size):
        loader = loader_from_mixture(mixture_file, seq_len=seq, batch_size=bs, buffer_docs=16,
                                     rank=rank, world_size=world_size)
        expected[rank] = _phase_of_batches(loader)
    # Every rank switches on the same step: the first step whose global start reaches the boundary.
    first_p2 = -(-60_000 // per_step)
    first_p3 = -(-90_000 // per_step)
    for rank, phases in expected.items():
        assert phases.index("p2") == first_p2, rank
        assert phases.index("p3") == first_p3, rank
        assert len(phases) == -(-110_000 // per_step)


def test_start_phase_skips_earlier_phases(mixture_file):
    loader = loader_from_mixture(mixture_file, seq_len=256, batch_size=4, buffer_docs=64, start_phase="p3")
    for _ in loader:
        pass
    assert list(loader.stats()["tokens_per_phase"]) == ["p3"]
    with pytest.raises(ConfigError, match="start_phase"):
        loader_from_mixture(mixture_file, seq_len=256, start_phase="p9")


def test_infeasible_mixture_is_refused_before_reading(tmp_path, mixture_file):
    doc = yaml.safe_load(mixture_file.read_text())
    doc["sources"] = {s: {"path": str(mixture_file.parent / s)} for s in doc["sources"]}
    doc["phases"][0]["tokens"] = "1B"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError, match="not feasible"):
        loader_from_mixture(bad, seq_len=256)


def test_mix_report_cli_dry_run(mixture_file, tmp_path):
    out = tmp_path / "report"
    res = subprocess.run(
        [sys.executable, "-m", "jobs.cli", "mix", "report", str(mixture_file), "--seq-len", "256",
         "--batch-size", "4", "--buffer-docs", "8", "--out", str(out), "--max-deviation", "3"],
        capture_output=True, text=True,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    report = json.loads((out / "shares.json").read_text())
    assert {r["phase"] for r in report["rows"]} == {"p1", "p2", "p3"}
    assert (out / "shares.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "largest deviation" in res.stdout


def test_mix_report_from_saved_state(mixture_file, tmp_path):
    loader = loader_from_mixture(mixture_file, seq_len=256, batch_size=4, buffer_docs=64)
    for _, _b in zip(range(100), loader):
        pass
    state = tmp_path / "state.json"
    state.write_text(json.dumps(loader.state_dict()))
    res = subprocess.run(
        [sys.executable, "-m", "jobs.cli", "mix", "report", str(mixture_file), "--state", str(state),
         "--seq-len", "256", "--batch-size", "4", "--buffer-docs", "64", "--out", str(tmp_path / "r")],
        capture_output=True, text=True,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    got = json.loads((tmp_path / "r" / "shares.json").read_text())["stats"]["tokens_per_phase"]
    assert got == loader.stats()["tokens_per_phase"]
