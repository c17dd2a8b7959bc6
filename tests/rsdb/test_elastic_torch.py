"""Elastic resume through rsdb.torch and torch.distributed (gloo on loopback, fresh processes).

Run: ``.venv/bin/python -m pytest tests/rsdb/test_elastic_torch.py -q``
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is an optional extra")

import rsdb  # noqa: E402
from rsdb import Phase  # noqa: E402
from rsdb.schedule import StepClock  # noqa: E402
from rsdb.state import remaining_documents  # noqa: E402
from rsdb.torch import RSDBIterableDataset, StateTracker  # noqa: E402

from elastic_testutil import expected_phase_tokens, run_topology  # noqa: E402
from rsdb_testutil import make_corpus  # noqa: E402

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "elastic_resume.py"


def _consume(dl, out, tracker=None, n=None):
    got = 0
    for b in dl:
        if n is not None and got == n:
            break
        if tracker is not None:
            tracker.update(b)
        m = b["loss_mask"]
        for t, d, s in zip(b["tokens"][m].tolist(), b["doc_ids"][m].tolist(), b["source_ids"][m].tolist()):
            out[(s, d)].append(t)
        got += 1
    return got


def test_dataloader_worker_count_changes_exactly_once(tmp_path):
    paths, docs = make_corpus(tmp_path, {"a": [13, 40, 7, 90, 1] * 8, "b": [21, 60] * 12}, shard_tokens=150)
    kw = dict(seq_len=16, buffer_docs=4, max_chunk=9, seed=3, epochs=1)
    ds = RSDBIterableDataset(paths, return_state=True, batch_size=2, **kw)
    tracker = StateTracker(2, dataset=ds)
    out: dict = defaultdict(list)
    assert _consume(ds.dataloader(num_workers=2), out, tracker, n=7) == 7
    g = rsdb.gather_state([tracker.state_dict()])
    ds2 = RSDBIterableDataset(paths, return_state=True, batch_size=3, **{**kw, "buffer_docs": 6})
    ds2.load_state_dict(g)
    rest = _consume(ds2.dataloader(num_workers=3), out)
    assert rest == 3 * len(ds2.make_loader((0, 3)))
    expected = {(s, i): d for s, name in enumerate(paths) for i, d in enumerate(docs[name]) if d}
    assert dict(out) == expected
    # a tracker seeded from the dataset has every worker's part even before each worker's first batch
    ds3 = RSDBIterableDataset(paths, return_state=True, batch_size=2, **kw)
    early = StateTracker(4, dataset=ds3)
    _consume(ds3.dataloader(num_workers=4), defaultdict(list), early, n=1)
    assert sorted(early.state_dict()["workers"]) == ["0", "1", "2", "3"]
    assert rsdb.gather_state([early.state_dict()])["step"] == 1


def test_chain_8x2_then_6x1_over_gloo_then_12x4_with_batch_8_to_16(tmp_path):
    rng = np.random.default_rng(7)
    # large enough that no stream of the last hop finishes its carried share (so every
    # document the final state lists is one of the interrupted epoch)
    paths, docs = make_corpus(tmp_path / "corpus", {"web": rng.integers(1, 120, 1200).tolist(),
                                                    "code": rng.integers(1, 160, 1500).tolist()}, shard_tokens=8000)
    names = list(paths)
    ends = [6000, 14000, 44000]
    phases = [Phase(6000, {"web": 3, "code": 1}, "p1"), Phase(8000, {"web": 1, "code": 1}, "p2"),
              Phase(30000, {"web": 1, "code": 3}, "p3", batch_size=16)]
    kw = dict(seq_len=31, batch_size=8, buffer_docs=8, max_chunk=40, seed=11, phases=phases)
    out: dict = defaultdict(list)
    record: list = []
    # hop 1: 8 ranks x 2 workers, in this process
    hop1 = run_topology(paths, kw, 8, 2, 4, None, out, record)
    g1 = tmp_path / "g1.json"
    rsdb.save_state(rsdb.gather_state(hop1.states), g1)
    # hop 2: 6 ranks, one stream each (the layout of 1 DataLoader worker), fresh processes,
    # torch.distributed over gloo
    loader_json = dict(kw, phases=[{"tokens": p.tokens, "weights": p.weights, "name": p.name,
                                    "batch_size": p.batch_size} for p in phases])
    cmd = [sys.executable, str(EXAMPLE), "--sources", json.dumps(paths), "--world-size", "6", "--num-workers", "0",
           "--steps", "4", "--loader-json", json.dumps(loader_json), "--resume", str(g1),
           "--save", str(tmp_path / "g2.json"), "--log-tokens", str(tmp_path / "hop2")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for r in range(6):
        part = json.loads((tmp_path / "hop2" / f"rank{r}.json").read_text())
        assert part["steps"] == 4
        for key, toks in part["tokens"].items():
            s, d = map(int, key.split("/"))
            out[(names[s], d)].extend(toks)
    g2 = rsdb.load_state(tmp_path / "g2.json")
    clock2 = StepClock(world_size=6, batch_size=8, seq_len=31, schedule=[], tokens0=rsdb.load_state(g1)["tokens"])
    record += [(g, clock2.tokens_at(g), clock2.shape_at(g), 6) for g in range(4)]
    assert g2["tokens"] == clock2.tokens_at(4) and g2["step"] == 4 + 4
    # hop 3: 12 ranks x 4 workers to the end of the phases; batch size 16 from 14k tokens on
    hop3 = run_topology(paths, kw, 12, 4, None, g2, out, record)
    assert len(set(hop3.lengths)) == 1
    g3 = rsdb.gather_state(hop3.states)
    shapes = sorted({(tok >= 14000, shape, world) for _, tok, shape, world in record})
    assert shapes == [(False, (8, 31), 6), (False, (8, 31), 8), (False, (8, 31), 12), (True, (16, 31), 12)]
    assert g3["tokens"] >= 44000 > record[-1][1]
    assert all(not any(s["core"]["cursor"]) for s in hop3.states), "a stream ran out of carried work"
    emitted = np.asarray(g3["emitted"]).reshape(3, 2).sum(axis=1)
    assert emitted.tolist() == expected_phase_tokens(record, ends), "phase boundaries moved"
    left = remaining_documents(g3, hop3.loaders[(0, 0)])
    for name, ds_ in docs.items():
        for i, doc in enumerate(ds_):
            got, head = out.get((name, i), []), left.get((name, i))
            assert got == (doc if head is None else doc[:head]), f"{name}/{i}: not exactly once"
