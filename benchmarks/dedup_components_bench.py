"""Dedup's connected components: on the cluster vs the one-process union-find, at growing edge counts.

    .venv/bin/python benchmarks/dedup_components_bench.py [--edges 100000] [--scales 1,8] [--parts 2]

The duplicate graph is synthetic and shaped like MinHash output at web scale: many
small clusters plus long chains (near-duplicates of near-duplicates, the case that needs
the most star rounds), row keys spread over 1,000 units. For each scale it runs, in
fresh processes so peak RSS is each one's own:

* ``ray``: :func:`pipeline.stages.dedup._components.drops_from_edges` on a local Ray
  cluster (``--parts`` CPUs), the edges made in ``--parts`` pieces by tasks (as the
  key shuffle's reducers make them), the per-unit drop files written under a
  temporary folder;
* ``union_find``: :func:`pipeline.stages.dedup._groups.components_to_drops`, what the
  driver did before, over the same edges in one process.

The memory figure is the driver's RSS growth during the component step (current RSS
sampled every 10 ms, minus the RSS before the step; for ``union_find`` the edges are
already in the driver, as they were). Both answers are compared
(same drops) and the star rounds are printed. One JSON line
per run, with the load average: figures are comparable only within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class PeakSampler:
    """The highest current RSS of this process while the block runs (sampled every 10 ms)."""

    def __enter__(self):
        import threading

        self.base = self.peak = current_rss_mb()
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, current_rss_mb())

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, current_rss_mb())


def graph(n_edges: int, seed: int = 0):
    """Clusters of 2-10 rows (stars) and chains of 50-500 rows, until ``n_edges`` edges."""
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    a, b = [], []
    node, total = 0, 0
    while total < n_edges:
        if rng.random() < 0.05:
            size = int(rng.integers(50, 500))
            chain = node + rng.permutation(size)
            a.append(chain[:-1])
            b.append(chain[1:])
        else:
            size = int(rng.integers(2, 11))
            a.append(np.full(size - 1, node))
            b.append(np.arange(node + 1, node + size))
        node += size
        total += size - 1
    a, b = np.concatenate(a)[:n_edges], np.concatenate(b)[:n_edges]
    n_nodes = node
    unit = rng.integers(0, 1000, n_nodes)
    key = (unit.astype(np.int64) << 32) | np.arange(n_nodes, dtype=np.int64)
    ids = pa.array([f"doc-{i:09d}" for i in rng.permutation(n_nodes)])
    return pa.table({"a_key": pa.array(key[a]), "a_id": ids.take(pa.array(a)),
                     "b_key": pa.array(key[b]), "b_id": ids.take(pa.array(b))})


def _piece(n_edges: int, i: int, parts: int):
    edges = graph(n_edges)
    size = -(-edges.num_rows // parts)
    return edges.slice(i * size, size)


def _warm() -> int:
    import pipeline.stages.dedup._components  # noqa: F401

    return 0


def child(mode: str, n_edges: int, parts: int, out: str) -> None:
    import pyarrow.parquet as pq

    from pipeline._drops import DropSet
    from pipeline._fs import OutFS

    if mode == "ray":
        import ray

        ray.init(num_cpus=parts, include_dashboard=False, log_to_driver=False, configure_logging=False)
        # Start the worker processes (with the modules the tasks import) before the clock.
        ray.get([ray.remote(_warm).remote() for _ in range(parts)])
    edges = graph(n_edges) if mode == "union_find" else None
    sampler = PeakSampler().__enter__()
    started = time.perf_counter()
    if mode == "ray":
        from pipeline._ray import RayTasks
        from pipeline.stages.dedup._components import drops_from_edges

        # The edges are made by tasks, as the key shuffle's reducers make them in the pipeline:
        # the driver holds only references.
        refs = [ray.remote(_piece).remote(n_edges, i, parts) for i in range(parts)]
        ray.wait(refs, num_returns=len(refs))
        started = time.perf_counter()
        summary = drops_from_edges(RayTasks(), refs, "near_duplicate", parts, DropSet(OutFS(out), "d", "_d"))
        rows, rounds = summary["rows"], summary["rounds"]
    else:
        from pipeline.stages.dedup._groups import components_to_drops

        drops = components_to_drops(edges, "near_duplicate")
        pq.write_table(drops, os.path.join(out, "ref.parquet"))
        rows, rounds = drops.num_rows, None
    seconds = time.perf_counter() - started
    sampler.__exit__(None, None, None)
    print(json.dumps({"mode": mode, "edges": n_edges, "seconds": round(seconds, 2), "drops": rows, "rounds": rounds,
                      "step_rss_growth_mb": round(sampler.peak - sampler.base, 1),
                      "driver_peak_rss_mb": round(rss_mb(), 1)}))


def same(out_ray: str, out_ref: str) -> bool:
    import glob

    import pyarrow as pa
    import pyarrow.parquet as pq

    files = sorted(glob.glob(os.path.join(out_ray, "_work", "_d", "u*.parquet")))
    got = pa.concat_tables([pq.read_table(f) for f in files]).sort_by("_rowkey")
    ref = pq.read_table(os.path.join(out_ref, "ref.parquet")).sort_by("_rowkey")
    return got.equals(ref)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--edges", type=int, default=100_000, help="edges at scale 1")
    ap.add_argument("--scales", default="1,8")
    ap.add_argument("--parts", type=int, default=2, help="Ray CPUs and hash partitions")
    ap.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        mode, n, parts, out = args.child
        child(mode, int(n), int(parts), out)
        return
    for s in (int(x) for x in args.scales.split(",")):
        n = args.edges * s
        row = {"name": "dedup_components", "scale": s}
        outs = {}
        for mode in ("ray", "union_find"):
            outs[mode] = tempfile.mkdtemp(prefix=f"dcb-{mode}-")
            res = subprocess.run([sys.executable, __file__, "--child", mode, str(n), str(args.parts), outs[mode]],
                                 capture_output=True, text=True, check=False, cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)))
            if res.returncode:
                raise SystemExit(res.stderr[-3000:])
            row[mode] = json.loads(res.stdout.strip().splitlines()[-1])
        row["same_drops"] = same(outs["ray"], outs["union_find"])
        row["loadavg"] = loadavg()
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
