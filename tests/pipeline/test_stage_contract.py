"""The stage contract: stages are plain Python over tables; the runner owns the cluster.

A global stage gets the executor that runs its shuffle from the runner
(``run_distributed(..., tasks=...)``), so its distributed path runs here in one process
with :class:`LocalTasks` and must decide exactly what its one-table ``process`` decides.
Run: ``.venv/bin/python -m pytest tests/pipeline/test_stage_contract.py -q``
"""

from __future__ import annotations

import ast
import random
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest
import xxhash

from pipeline._shuffle import LocalTasks
from pipeline.stages.base import (
    DUP_OF,
    REJECT_REASON,
    ROW_KEY,
    GlobalStage,
    empty_drops,
)
from pipeline.stages.dedup._groups import group_drops
from pipeline.stages.dedup.exact import ExactDedup
from pipeline.stages.dedup.minhash import MinHashDedup

REPO = Path(__file__).resolve().parents[2]
STAGES_DIR = REPO / "pipeline" / "stages"


class MemorySink:
    """Stands in for a DropSet: what the write tasks store per unit."""

    def __init__(self) -> None:
        self.units: dict[int, pa.Table] = {}

    def write(self, unit: int, table: pa.Table) -> None:
        assert unit not in self.units, f"unit {unit} written twice"
        self.units[unit] = table

    def all(self) -> list[tuple[int, str, str]]:
        if not self.units:
            return []
        t = pa.concat_tables(self.units.values())
        return sorted(zip(t.column(ROW_KEY).to_pylist(), t.column(REJECT_REASON).to_pylist(),
                          t.column(DUP_OF).to_pylist()))


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_no_stage_module_imports_ray_or_the_runner():
    bad = {}
    for path in sorted(STAGES_DIR.rglob("*.py")):
        hit = {n for n in _imports(path) if n == "ray" or n.startswith(("ray.", "pipeline._ray", "pipeline.runner"))}
        if hit:
            bad[str(path.relative_to(REPO))] = sorted(hit)
    assert bad == {}, f"stages must get cluster work from the runner, not import it: {bad}"


def test_importing_every_stage_and_the_runner_does_not_load_ray():
    code = "import sys, pipeline.stages, pipeline.runner; print('ray' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"


def _corpus(seed: int = 5) -> list[dict]:
    rng = random.Random(seed)
    vocab = ["".join(rng.choice("abcdefghijklmnop") for _ in range(rng.randint(3, 8))) for _ in range(2000)]
    rows = []
    for c in range(5):
        words = [rng.choice(vocab) for _ in range(200)]
        for j in range(4):  # near-duplicate chains: a few words changed each step
            for k in rng.sample(range(len(words)), 3):
                words[k] = rng.choice(vocab)
            rows.append({"id": f"c{c}-{j}-{rng.randrange(1000):03d}", "text": " ".join(words)})
    rows += [dict(rows[i], id=f"x{i}", text=rows[i]["text"].upper()) for i in range(0, len(rows), 3)]  # exact copies
    rows += [{"id": f"u{i}", "text": " ".join(rng.choice(vocab) for _ in range(150))} for i in range(15)]
    rng.shuffle(rows)
    return rows


def _key_tables(stage: GlobalStage, rows: list[dict], units: int) -> tuple[list[pa.Table], pa.Table]:
    """The rows cut into units, prepared, with run-wide row keys (as the runner's key load gives them)."""
    table = stage.prepare(pa.Table.from_pylist(rows))
    size = -(-table.num_rows // units)
    keyed = []
    for u in range(units):
        part = table.slice(u * size, size)
        keys = pa.array([(u << 32) | i for i in range(part.num_rows)], pa.int64())
        keyed.append(part.append_column(ROW_KEY, keys).select(["id", ROW_KEY, *stage.key_columns]))
    return keyed, pa.concat_tables(keyed)


@pytest.mark.parametrize("stage", [ExactDedup(), MinHashDedup()], ids=lambda s: s.name)
@pytest.mark.parametrize("parts", [1, 3])
def test_distributed_path_with_a_handed_executor_equals_one_table_decision(stage, parts):
    rows = _corpus()
    tables, every = _key_tables(stage, rows, units=4)
    sink = MemorySink()
    summary = stage.run_distributed(tables, tasks=LocalTasks(), num_partitions=parts, sink=sink)
    ref = stage.find_drops(every)
    want = sorted(zip(ref.column(ROW_KEY).to_pylist(), ref.column(REJECT_REASON).to_pylist(),
                      ref.column(DUP_OF).to_pylist()))
    assert sink.all() == want and summary["rows"] == len(want) > 3
    for unit, t in sink.units.items():  # each unit's drops are its own
        assert {k >> 32 for k in t.column(ROW_KEY).to_pylist()} == {unit}


class FirstWordDedup(GlobalStage):
    """A global stage with only ``prepare`` and ``find_drops``: the base's run_distributed serves it."""

    name = "first_word_dedup_test"
    key_columns = ("_first",)

    def prepare(self, table: pa.Table) -> pa.Table:
        firsts = [xxhash.xxh64_intdigest((t or " ").split()[0].encode()) >> 1 for t in table.column("text").to_pylist()]
        return table.append_column("_first", pa.array(firsts, pa.int64()))

    def find_drops(self, keys: pa.Table) -> pa.Table:
        return group_drops(keys, "_first", "same_first_word") if keys.num_rows else empty_drops()


def test_a_global_stage_needs_only_prepare_and_find_drops():
    rows = [{"id": f"d{i}", "text": f"{w} text {i}"} for i, w in enumerate(["a", "b", "a", "c", "b", "a", "d"])]
    stage = FirstWordDedup()
    tables, _ = _key_tables(stage, rows, units=3)
    sink = MemorySink()
    summary = stage.run_distributed(tables, tasks=LocalTasks(), num_partitions=2, sink=sink)
    assert summary == {"rows": 3, "reasons": {"same_first_word": 3}}
    dropped = {r["id"] for r in stage.process(pa.Table.from_pylist(rows)).rejected.to_pylist()}
    assert dropped == {"d2", "d4", "d5"}  # the one-table path agrees: one document per first word
