"""Scheduled batch size / sequence length: loader switch at a token boundary, mixture files, `mix plan`.

Run: ``.venv/bin/python -m pytest tests/rsdb/test_elastic_schedule.py -q``
"""

from __future__ import annotations

from collections import defaultdict

import pytest
import yaml
from typer.testing import CliRunner

import rsdb
from rsdb import ConfigError, Phase, RSDBLoader
from rsdb.mixture import load_mixture, loader_from_mixture, plan_steps
from rsdb.mixture_cli import app

from elastic_testutil import run_topology
from rsdb_testutil import make_corpus


def test_batch_size_doubles_at_the_first_step_from_the_token_count_on(tmp_path):
    paths, docs = make_corpus(tmp_path, {"a": [40, 13, 90, 7] * 30}, shard_tokens=400)
    # 2 ranks x 2 workers, batch 2 x seq 16: 64 tokens per step; 300 tokens -> step 5 (320) switches
    kw = dict(seq_len=16, batch_size=2, buffer_docs=4, seed=1, phases=[Phase(1000, {"a": 1})],
              schedule=[{"tokens": 300, "batch_size": 4}])
    record: list = []
    out: dict = defaultdict(list)
    res = run_topology(paths, kw, 2, 2, None, None, out, record)
    assert [(g, t, s) for g, t, s, _ in record[3:7]] == [(3, 192, (2, 16)), (4, 256, (2, 16)), (5, 320, (4, 16)),
                                                         (6, 448, (4, 16))]
    assert record[-1][1] < 1000 <= record[-1][1] + 4 * 16 * 2 and res.lengths == [len(record)] * 2
    # exactly once across the switch: every document read so far is a prefix of itself, no repeats
    for (name, i), toks in out.items():
        assert toks == docs[name][i][: len(toks)]


def test_schedule_checks(tmp_path):
    paths, _ = make_corpus(tmp_path, {"a": [40] * 10})
    with pytest.raises(ConfigError, match="not epochs"):
        RSDBLoader(paths, epochs=1, schedule=[{"tokens": 10, "batch_size": 2}])
    with pytest.raises(ConfigError, match="neither batch_size nor seq_len"):
        RSDBLoader(paths, schedule=[{"tokens": 10}])
    with pytest.raises(ConfigError, match="two entries at 10"):
        RSDBLoader(paths, schedule=[{"tokens": 10, "batch_size": 2}, {"tokens": 10, "seq_len": 4}])


MIX = {
    "name": "sched",
    "sources": {"web": {"path": "web"}},
    "phases": [{"name": "p1", "tokens": "5K", "weights": {"web": 1}},
               {"name": "p2", "tokens": "3K", "weights": {"web": 1}, "seq_len": 32}],
    "schedule": [{"tokens": "2K", "batch_size": 8}],
}


def test_mixture_schedule_drives_the_loader_and_the_plan(tmp_path):
    paths, _ = make_corpus(tmp_path, {"web": [50, 120, 9, 33] * 40}, shard_tokens=2000)
    mix = dict(MIX, sources={"web": {"path": paths["web"]}})
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(mix))
    m = load_mixture(tmp_path / "m.yaml")
    rows = plan_steps(m, world_size=2, batch_size=4, seq_len=16)
    # 128 tokens/step until 2048 (16 steps), then 256/step; p2 starts at 5120 with seq 32 (512/step)
    assert [(r["phase"], r["first_step"], r["steps"], r["shapes"]) for r in rows] == [
        ("p1", 0, 28, [[0, 4, 16], [16, 8, 16]]), ("p2", 28, 6, [[28, 8, 32]])]
    loader = loader_from_mixture(tmp_path / "m.yaml", world_size=2, batch_size=4, seq_len=16, buffer_docs=4)
    shapes = [b["tokens"].shape for b in loader]
    assert len(shapes) == 34 and shapes[15] == (4, 17) and shapes[16] == (8, 17) and shapes[28] == (8, 33)
    result = CliRunner().invoke(app, ["plan", str(tmp_path / "m.yaml"), "--world-size", "2", "--batch-size", "4",
                                      "--seq-len", "16"])
    assert result.exit_code == 0, result.output
    assert "Global steps per phase" in result.output and "8 x 32 from 28" in result.output


def test_pickled_loader_keeps_its_schedule_and_phase_shapes(tmp_path):
    import pickle

    import numpy as np

    paths, _ = make_corpus(tmp_path, {"a": [40, 13, 90, 7] * 30}, shard_tokens=400)
    loader = RSDBLoader(paths, seq_len=16, batch_size=2, buffer_docs=4, seed=3,
                        phases=[Phase(300, {"a": 1}), Phase(2000, {"a": 1}, seq_len=8)],
                        schedule=[{"tokens": 100, "batch_size": 4}])
    it = iter(loader)
    next(it)
    clone = pickle.loads(pickle.dumps(loader))
    assert clone.schedule == loader.schedule and len(clone.schedule) == 2
    for _ in range(12):  # across both switches: the clone's batches equal the original's
        a, b = next(it), next(iter(clone))
        assert a["tokens"].shape == b["tokens"].shape and np.array_equal(a["tokens"], b["tokens"])
