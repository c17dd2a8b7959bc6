"""Planning and reading JSONL.zst at two sizes: each unit reads only its own bytes, so time grows linearly.

    .venv/bin/python benchmarks/bench_read.py [--sizes 256,1024] [--single-frame]

For each size (MB of JSONL) the demo corpus's lines are repeated into a ``.jsonl.zst``
written as one zstd frame per 4 MB (what ``pzstd`` and most large-corpus writers do);
``--single-frame`` adds the same data as one frame, which no reader can enter in the
middle. Then, in this one process and timed in CPU seconds: ``plan_units`` (one decoding
pass that counts lines and notes every unit's offset and frame) and ``read_unit`` over
every unit (decode + JSON + Arrow), with ``unit_rows=2000``. Prints one JSON line per
(size, layout) and the growth ratio from the smallest to the largest size: linear
growth is a ratio equal to the size ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from curation_bench import commit  # benchmarks/ is on sys.path when run as a script

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DEMO = Path(os.environ.get("TRINITY_SHARED", REPO.parent / "shared")) / "corpus" / "demo.jsonl.zst"
FRAME = 4 << 20


def write(path: Path, size_mb: int, frame: int | None) -> int:
    """``size_mb`` MB of demo JSONL lines (repeated) as zstd, one frame per ``frame`` bytes (None: one frame)."""
    import zstandard

    raw = zstandard.ZstdDecompressor().stream_reader(open(DEMO, "rb")).read()
    target = size_mb * 1_000_000
    cctx = zstandard.ZstdCompressor(level=3)
    written = 0
    with open(path, "wb") as f:
        if frame is None:
            with cctx.stream_writer(f, closefd=False) as w:
                while written < target:
                    w.write(raw)
                    written += len(raw)
        else:
            while written < target:
                for i in range(0, len(raw), frame):
                    f.write(cctx.compress(raw[i : i + frame]))
                written += len(raw)
    return written


def measure(path: Path, mb: float, layout: str) -> dict:
    from pipeline.config import InputConfig
    from pipeline.read import plan_units, read_unit

    cfg = InputConfig(paths=[str(path)], unit_rows=2000)
    t0 = time.process_time()
    units = plan_units(cfg)
    plan_s = time.process_time() - t0
    t0 = time.process_time()
    rows = 0
    for u in units:
        kept, rejected = read_unit(u, cfg)
        rows += kept.num_rows + rejected.num_rows
    read_s = time.process_time() - t0
    row = {"name": "read/plan+read", "layout": layout, "mb": round(mb, 1), "units": len(units), "rows": rows,
           "plan_cpu_s": round(plan_s, 2), "read_cpu_s": round(read_s, 2),
           "read_mb_s": round(mb / read_s, 1), "bytes_s": round(mb * 1e6 / (plan_s + read_s)),
           "device": "cpu x1", "commit": commit(), "loadavg": [round(x, 2) for x in os.getloadavg()]}
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="256,1024", help="MB of JSONL per file, comma-separated")
    ap.add_argument("--single-frame", action="store_true", help="also measure one-frame files")
    args = ap.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    layouts = ["frames"] + (["single-frame"] if args.single_frame else [])
    with tempfile.TemporaryDirectory(prefix="bench-read-") as tmp:
        rows: dict[tuple[str, int], dict] = {}
        for size in sizes:
            for layout in layouts:
                path = Path(tmp) / f"{layout}-{size}.jsonl.zst"
                mb = write(path, size, FRAME if layout == "frames" else None) / 1e6
                rows[(layout, size)] = measure(path, mb, layout)
                path.unlink()
        lo, hi = min(sizes), max(sizes)
        for layout in layouts:
            a, b = rows[(layout, lo)], rows[(layout, hi)]
            print(json.dumps({"name": "read/growth", "layout": layout, "size_ratio": round(b["mb"] / a["mb"], 2),
                              "plan_ratio": round(b["plan_cpu_s"] / a["plan_cpu_s"], 2),
                              "read_ratio": round(b["read_cpu_s"] / a["read_cpu_s"], 2),
                              "loadavg": [round(x, 2) for x in os.getloadavg()]}), flush=True)


if __name__ == "__main__":
    main()
