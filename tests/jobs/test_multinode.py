"""Curation on a real 2-node Ray cluster on loopback, submitted with ``ray job submit``.

The small version of ``benchmarks/curation_scale_bench.py``: a head and a worker node
(``jobs.loopback.LoopbackCluster``, 1 CPU each, own temp dirs, stopped by process group),
the curate job sent as a remote cluster's user sends it, once with 2 workers (a map actor
on each node) and once with 1. Both runs must give byte-identical kept and rejected
shards: which node ran a unit never shows in the output.
"""

from __future__ import annotations

import hashlib
import secrets
import sys
from pathlib import Path

import pytest
import yaml

from jobs.loopback import LoopbackCluster, job_server_available


def _digests(out: Path) -> dict[str, str]:
    """sha256 of every kept and rejected shard, by path relative to the output's run area."""
    from pipeline.layout import run_folder

    files = sorted(out.glob("part-*.parquet")) + sorted(Path(run_folder(str(out))).rglob("rejected/*.parquet"))
    return {f.name if f.parent == out else f"rejected/{f.name}": hashlib.sha256(f.read_bytes()).hexdigest()
            for f in files}


def _config(tmp: Path, docs: Path, name: str, workers: int) -> tuple[Path, Path]:
    out = tmp / name
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump({
        "input": {"paths": [str(docs)], "unit_rows": 15, "rename": {"lang": "lang_label"}},
        "output": {"path": str(out), "shard_bytes": "100KB"},
        "stages": ["normalize", "exact_dedup", "minhash_dedup"],
        "ray": {"workers": workers}, "progress": False,
    }))
    return path, out


@pytest.mark.skipif(not job_server_available(), reason="the job server needs ray[default] (pip install 'ray[default]')")
@pytest.mark.timeout(600)
def test_curate_on_two_loopback_nodes_equals_one_worker(tiny_docs, tmp_path):
    with LoopbackCluster(tmp_path / "cluster", worker_nodes=1, num_cpus=1, object_store=150_000_000) as cluster:
        assert cluster.status()["cpu_total"] == 2.0  # both nodes joined
        runs = {}
        for workers in (2, 1):
            config, out = _config(tmp_path, tiny_docs, f"out-{workers}w", workers)
            res = cluster.submit([sys.executable, "-m", "jobs.curate", "--config", str(config)],
                                 submission_id=f"multinode-{workers}w-{secrets.token_hex(4)}", timeout=400)
            assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
            runs[workers] = out
            if workers == 2:
                # 2 one-CPU map actors on two one-CPU nodes: the worker node ran Ray workers
                assert cluster.worker_logs(1), "no Ray worker ran on the worker node"
    from pipeline.manifest import load_manifest

    manifest = load_manifest(str(runs[2])).to_json()
    assert manifest["input"]["rows"] == 94 and manifest["rows"] < 94  # 90 docs + 4 exact copies, copies dropped
    two, one = _digests(runs[2]), _digests(runs[1])
    assert two and any(k.startswith("rejected/") for k in two)
    assert two == one
