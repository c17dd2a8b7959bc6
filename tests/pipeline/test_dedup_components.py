"""Dedup components on the cluster: the same drops as the one-process union-find, on any graph.

The property tests run the distributed code path (the same task bodies and the same
orchestration) with the in-process executor; the integration tests run it on a real
local Ray cluster, alone and inside ``run_pipeline``.
"""

from __future__ import annotations

import glob
import json
import random
from itertools import pairwise
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline._drops import DropSet
from pipeline._fs import OutFS
from pipeline._ray import RayTasks
from pipeline._shuffle import LocalTasks
from pipeline.config import parse_config
from pipeline.runner import run_pipeline
from pipeline.stages.base import ROW_KEY
from pipeline.stages.dedup._components import drops_from_edges, node_bucket
from pipeline.stages.dedup._groups import components_to_drops
from pipeline.stages.dedup.minhash import MinHashDedup


class MemorySink:
    """Collects what the write tasks store per unit (stands in for a DropSet)."""

    def __init__(self) -> None:
        self.units: dict[int, pa.Table] = {}

    def write(self, unit: int, table: pa.Table) -> None:
        assert unit not in self.units, f"unit {unit} written twice"
        assert table.column(ROW_KEY).to_pylist() == sorted(table.column(ROW_KEY).to_pylist())
        self.units[unit] = table


def edge_table(pairs: list[tuple[int, int]], ids: dict[int, str]) -> pa.Table:
    return pa.table({"a_key": pa.array([a for a, _ in pairs], pa.int64()), "a_id": [ids[a] for a, _ in pairs],
                     "b_key": pa.array([b for _, b in pairs], pa.int64()), "b_id": [ids[b] for _, b in pairs]})


def chunks(table: pa.Table, n: int) -> list[pa.Table]:
    """The edges cut into ``n`` producer tables (as the key shuffle's partitions would be)."""
    size = max(1, -(-table.num_rows // n))
    return [table.slice(i, size) for i in range(0, max(table.num_rows, 1), size)]


def distributed(edges: pa.Table, parts: int, producers: int) -> tuple[pa.Table, dict]:
    sink = MemorySink()
    summary = drops_from_edges(LocalTasks(), chunks(edges, producers), "near_duplicate", parts, sink)
    for unit, table in sink.units.items():  # each file holds exactly its own unit's rows
        assert {k >> 32 for k in table.column(ROW_KEY).to_pylist()} == {unit}
    got = pa.concat_tables([sink.units[u] for u in sorted(sink.units)]) if sink.units else None
    return got, summary


def reference(edges: pa.Table) -> pa.Table:
    return components_to_drops(edges, "near_duplicate")


def assert_same(edges: pa.Table, parts: int, producers: int = 3) -> dict:
    got, summary = distributed(edges, parts, producers)
    ref = reference(edges)
    if got is None:
        assert ref.num_rows == 0
    else:
        assert got.to_pylist() == ref.to_pylist()
    assert summary["rows"] == ref.num_rows
    return summary


@st.composite
def graphs(draw) -> tuple[list[tuple[int, int]], dict[int, str]]:
    """Chains, stars, cycles and random edges over row keys of a few units, ids with repeats."""
    n = draw(st.integers(2, 60))
    units = draw(st.integers(1, 4))
    keys = [(draw(st.integers(0, units - 1)) << 32) | i for i in range(n)]
    order = draw(st.permutations(keys))
    ids = {k: f"d{draw(st.integers(0, max(1, n // 3)))}" for k in keys}  # repeated ids: (id, row key) decides
    pairs: list[tuple[int, int]] = []
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["chain", "star", "cycle", "random"]))
        lo = draw(st.integers(0, n - 2))
        hi = draw(st.integers(lo + 2, n))
        part = list(order[lo:hi])
        if kind == "chain":
            pairs += list(pairwise(part))
        elif kind == "star":
            pairs += [(part[0], x) for x in part[1:]]
        elif kind == "cycle":
            pairs += list(zip(part, part[1:] + part[:1]))
        else:
            pairs += [(draw(st.sampled_from(part)), draw(st.sampled_from(part))) for _ in range(len(part))]
    if draw(st.booleans()):
        pairs = [(b, a) for a, b in pairs]
    return pairs, ids


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(graphs(), st.integers(1, 5), st.integers(1, 4))
def test_components_equal_union_find(graph, parts, producers):
    pairs, ids = graph
    assert_same(edge_table(pairs, ids), parts, producers)


@pytest.mark.parametrize("n", [2, 100, 3000])
@pytest.mark.parametrize("layout", ["sorted", "reversed", "shuffled"])
def test_long_paths_need_log_rounds(n, layout):
    """A path of n rows is one component; the star rounds grow like log n, not like n."""
    keys = [((i % 7) << 32) | i for i in range(n)]
    if layout == "reversed":
        keys.reverse()
    elif layout == "shuffled":
        random.Random(n).shuffle(keys)
    ids = {k: f"doc-{k % 1000:04d}" for k in keys}
    summary = assert_same(edge_table(list(pairwise(keys)), ids), parts=4)
    assert summary["rows"] == n - 1
    assert summary["rounds"] <= 2 * max(1, n.bit_length())


def test_stars_and_pairs_are_done_at_once():
    ids = {k: f"d{k}" for k in range(40)}
    pairs = [(0, k) for k in range(1, 20)] + [(20 + 2 * i, 21 + 2 * i) for i in range(10)]
    assert assert_same(edge_table(pairs, ids), parts=3)["rounds"] == 0


def test_node_buckets_spread_row_keys():
    keys = [(u << 32) | r for u in range(8) for r in range(500)]
    import numpy as np

    counts = np.bincount(node_bucket(np.array(keys, np.int64), 4), minlength=4)
    assert counts.min() > 0.8 * len(keys) / 4  # raw row keys would all land in one bucket


def test_on_ray_with_drop_files(tmp_path, ray_cluster):
    """Real Ray tasks, real per-unit Parquet drop files; a chain and a star over 5 units."""
    rng = random.Random(3)
    keys = [(rng.randrange(5) << 32) | i for i in range(400)]
    ids = {k: f"doc-{rng.randrange(300):03d}" for k in keys}
    pairs = list(pairwise(keys[:300])) + [(keys[300], k) for k in keys[301:]]
    edges = edge_table(pairs, ids)
    sink = DropSet(OutFS(str(tmp_path)), "minhash_dedup", "_drops")
    tasks = RayTasks()
    refs = [ray_cluster.put(t) for t in chunks(edges, 3)]
    summary = drops_from_edges(tasks, refs, "near_duplicate", 3, sink)
    files = sorted(glob.glob(str(tmp_path / "_work" / "_drops" / "u*.parquet")))
    got = pa.concat_tables([pq.read_table(f) for f in files])
    assert got.to_pylist() == reference(edges).to_pylist()
    assert summary["rows"] == 398 and summary["rounds"] >= 1
    assert len(files) == 5 and sink.for_unit(99).num_rows == 0


def chained_corpus(n_chains: int = 6, length: int = 8, seed: int = 11) -> list[dict]:
    """Chains of near-duplicates (each a small edit of the previous) plus exact copies and unique docs."""
    rng = random.Random(seed)
    vocab = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 9))) for _ in range(4000)]
    rows = []
    for c in range(n_chains):
        words = [rng.choice(vocab) for _ in range(300)]
        for j in range(length):
            for k in rng.sample(range(len(words)), 4):
                words[k] = rng.choice(vocab)
            rows.append({"id": f"c{c}-{rng.randrange(10**6):06d}-{j}", "text": " ".join(words)})
    rows += [dict(rows[i], id=f"x{i}") for i in range(0, len(rows), 9)]  # exact copies
    rows += [{"id": f"u{i}", "text": " ".join(rng.choice(vocab) for _ in range(200))} for i in range(30)]
    rng.shuffle(rows)
    return rows


def test_pipeline_decisions_equal_one_process_reference(tmp_path, ray_cluster):
    """run_pipeline on real Ray (2 workers, 7 units) drops exactly what GlobalStage.process drops in one process."""
    rows = chained_corpus()
    inp = tmp_path / "docs.jsonl"
    inp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = {"input": {"paths": [str(inp)], "unit_rows": 16}, "output": {"path": str(tmp_path / "out")},
           "stages": ["minhash_dedup"], "ray": {"workers": 2}, "progress": False}
    m = run_pipeline(parse_config(cfg)).manifest
    rejected = pq.read_table(sorted(glob.glob(str(tmp_path / "**" / "rejected" / "*.parquet"), recursive=True)))
    got = sorted(zip(rejected.column("id").to_pylist(), rejected.column("dup_of").to_pylist()))
    ref = MinHashDedup().process(pa.Table.from_pylist(rows)).rejected  # union-find over all rows at once
    assert got == sorted(zip(ref.column("id").to_pylist(), ref.column("dup_of").to_pylist()))
    stats = next(s for s in m["stages"] if s["stage"] == "minhash_dedup")
    assert stats["docs_rejected"] == len(got) > 40 and stats["component_rounds"] >= 1
    drop_files = glob.glob(str(tmp_path / "**" / "_work" / "_global0-0-minhash_dedup" / "u*.parquet"), recursive=True)
    assert 1 < len(drop_files) <= len(json.loads(next(Path(tmp_path).glob("**/_work/run.json")).read_text())["state"]["units"])


def test_global_phase_killed_half_way_is_redone_identically(tmp_path, ray_cluster):
    """A dedup phase without its stats file (killed after some drop files) is redone from scratch: same shards."""
    rows = chained_corpus(n_chains=3, length=6)
    inp = tmp_path / "docs.jsonl"
    inp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = {"input": {"paths": [str(inp)], "unit_rows": 12}, "output": {"path": str(tmp_path / "out")},
           "stages": ["exact_dedup", "minhash_dedup"], "ray": {"workers": 2}, "progress": False}
    first = run_pipeline(parse_config(cfg)).manifest
    (stats,) = Path(tmp_path).glob("**/_work/global0-1-minhash_dedup.json")
    (manifest,) = [p for p in Path(tmp_path).glob("**/manifest.json") if "_work" not in str(p)]
    stats.unlink()
    manifest.unlink()
    stale = stats.parent / "_global0-1-minhash_dedup" / "u999999.parquet"
    stale.write_bytes(b"left by a killed run")
    again = run_pipeline(parse_config(cfg)).manifest
    assert not stale.exists()
    assert [s["sha256"] for s in again["shards"]] == [s["sha256"] for s in first["shards"]]
    assert [s["sha256"] for s in again["rejected"]["shards"]] == [s["sha256"] for s in first["rejected"]["shards"]]
