"""Language ID backends side by side on the demo corpus's language labels: accuracy and MB per CPU-second.

    .venv/bin/python benchmarks/langid_bench.py [--prefix-chars 2000] [--limit N]

Every document with a natural-language label (``zxx``, code, is left out) is identified
from its first ``--prefix-chars`` characters, as the ``langid`` stage does. Labels and
predictions are folded to one code per language (``zh-Hans``/``zh-Hant`` -> ``zh``,
``nb``/``nn`` -> ``no``). Throughput is input MB per CPU-second (``time.process_time``
counts every thread, so lingua's parallel batch is charged for all the cores it used),
measured in one process, backends one after another, with the load average printed.
Prints one JSON line per backend.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEMO = Path(os.environ.get("TRINITY_SHARED", REPO.parent / "shared")) / "corpus" / "demo.jsonl.zst"
FOLD = {"nb": "no", "nn": "no", "zh-hans": "zh", "zh-hant": "zh", "zh-cn": "zh", "zh-tw": "zh"}


def fold(code: str) -> str:
    code = (code or "und").lower().replace("_", "-")
    return FOLD.get(code, code.split("-")[0])


def load(limit: int | None) -> list[tuple[str, str]]:
    import zstandard

    docs = []
    with open(DEMO, "rb") as f:
        for line in io.TextIOWrapper(zstandard.ZstdDecompressor().stream_reader(f), encoding="utf-8"):
            r = json.loads(line)
            if r.get("lang") and r["lang"] != "zxx":
                docs.append((r["text"], fold(r["lang"])))
            if limit and len(docs) >= limit:
                break
    return docs


def backend(name: str, **options):
    """The ``langid`` stage's own detector (what a curate run uses), on whole prefixes."""
    from pipeline.stages.langid import LangId, LangIdConfig

    stage = LangId(LangIdConfig(backend=name, prefix_chars=None, **options))
    return lambda texts: stage.detect(texts)[0]


BACKENDS = {
    "lingua-low": lambda: backend("lingua", low_accuracy=True),
    "lingua-high": lambda: backend("lingua", low_accuracy=False),
    "py3langid": lambda: backend("py3langid"),
    "cld2": lambda: backend("cld2"),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prefix-chars", type=int, default=2000)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--backends", default=",".join(BACKENDS))
    args = ap.parse_args()
    docs = load(args.limit)
    texts = [t[: args.prefix_chars] for t, _ in docs]
    labels = [lab for _, lab in docs]
    mb = sum(len(t.encode("utf-8", "surrogatepass")) for t in texts) / 1e6
    full_mb = sum(len(t.encode("utf-8", "surrogatepass")) for t, _ in docs) / 1e6  # what the stage is charged per
    for name in args.backends.split(","):
        detect = BACKENDS[name]()
        detect(texts[:20])  # warm-up: model load
        cpu, wall = time.process_time(), time.perf_counter()
        got = [fold(x) for x in detect(texts)]
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        right = sum(g == lab for g, lab in zip(got, labels))
        print(json.dumps({"name": f"langid/{name}", "docs": len(texts), "mb": round(mb, 2),
                          "full_text_mb_per_cpu_s": round(full_mb / cpu, 2),
                          "accuracy": round(right / len(texts), 4), "mb_per_cpu_s": round(mb / cpu, 2),
                          "wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "prefix_chars": args.prefix_chars,
                          "loadavg": [round(x, 2) for x in os.getloadavg()]}), flush=True)


if __name__ == "__main__":
    main()
