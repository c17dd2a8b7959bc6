"""`make demo`: the whole data path on the real demo corpus, step by step.

curate -> train a small tokenizer -> tokenize -> plan a three-phase mixture ->
stream phase-mixed batches (achieved vs target shares) -> batch-heterogeneity
comparison of RSDB against naive sequential packing.

Every step is a plain ``trinity-data`` command, printed before it runs, so the
demo doubles as a usage example. Outputs land under ``--out`` (default
``out/demo``); rerunning reuses finished steps' outputs where the step is
resumable.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import yaml

# Phase budgets as fractions of the tokens the demo corpus holds, and weights that
# shift toward code in later phases, as Trinity's 10T/4T/3T phases did.
PHASE_FRACTIONS = {"phase1": 0.55, "phase2": 0.27, "phase3": 0.18}
PHASE_WEIGHTS = {
    "phase1": {"web-docs": 0.45, "docs-rst": 0.15, "code-python": 0.12, "code-go": 0.08, "fiction-ish": 0.20},
    "phase2": {"web-docs": 0.35, "docs-rst": 0.20, "code-python": 0.18, "code-go": 0.12, "fiction-ish": 0.15},
    "phase3": {"web-docs": 0.25, "docs-rst": 0.20, "code-python": 0.25, "code-go": 0.20, "fiction-ish": 0.10},
}


MIN_SOURCE_FRACTION = 0.02


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "jobs.cli", *args]


def run_step(title: str, cmd: list[str], timings: dict[str, float]) -> None:
    print(f"\n=== {title} ===", flush=True)
    shown = [("trinity-data" if a == "jobs.cli" else a) for a in cmd]
    if shown[:2] == [sys.executable, "-m"]:
        shown = shown[2:]
    print("$ " + shlex.join(shown), flush=True)
    started = time.perf_counter()
    subprocess.run(cmd, check=True)
    timings[title] = time.perf_counter() - started
    print(f"--- {title}: {timings[title]:.1f}s", flush=True)


def write_mixture(tokens_dir: Path, path: Path) -> Path:
    """A three-phase mixture over whatever sources the tokenize step produced."""
    sources = {}
    for manifest in sorted(tokens_dir.glob("*/manifest.json")):
        info = json.loads(manifest.read_text())
        if info.get("num_tokens", 0) > 0:
            sources[info["source"]] = (manifest.parent, int(info["num_tokens"]))
    if not sources:
        raise SystemExit(f"no token shards under {tokens_dir}")
    total = sum(t for _, t in sources.values())
    # A source that curation cut to a sliver would have to repeat hundreds of times
    # (the planner refuses that); leave it out of the demo mixture and say so.
    for name, (_, tokens) in list(sources.items()):
        if tokens < MIN_SOURCE_FRACTION * total:
            print(f"note: source {name!r} holds only {tokens:,} of {total:,} tokens after curation; "
                  "left out of the demo mixture")
            del sources[name]
    total = sum(t for _, t in sources.values())
    phases = []
    for name, frac in PHASE_FRACTIONS.items():
        weights = {s: w for s, w in PHASE_WEIGHTS[name].items() if s in sources} or {s: 1.0 for s in sources}
        # A source left out takes its weight with it: rescale the rest so the file's weights are the
        # shares that train (the planner flags weights that do not sum to 1).
        total_w = sum(weights.values())
        weights = {s: round(w / total_w, 6) for s, w in weights.items()}
        weights[max(weights, key=weights.get)] += round(1.0 - sum(weights.values()), 6)
        phases.append({"name": name, "tokens": int(total * frac), "weights": weights})
    doc = {
        "name": "demo-three-phase",
        "sources": {s: {"path": os.path.relpath(p, path.parent)} for s, (p, _) in sources.items()},
        "phases": phases,
        "max_epochs": 10,
        "warn_epochs": 3,
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", default="../shared", help="the shared folder holding corpus/demo.jsonl.zst")
    parser.add_argument("--out", default="out/demo", help="where every output lands")
    parser.add_argument("--vocab-size", type=int, default=8192)
    args = parser.parse_args(argv)

    corpus = Path(args.shared) / "corpus" / "demo.jsonl.zst"
    if not corpus.exists():
        print(f"demo corpus not found: {corpus} (pass --shared)", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    started = time.perf_counter()

    config = out / "curate.yaml"
    template = Path(__file__).resolve().parent.parent / "pipeline" / "configs" / "demo.yaml"
    cfg = yaml.safe_load(template.read_text())
    cfg["input"]["paths"] = [str(corpus)]
    cfg["output"]["path"] = str(out / "curated")
    config.write_text(yaml.safe_dump(cfg, sort_keys=False))
    run_step("1. curate", _cli("curate", "--config", str(config)), timings)

    curated = out / "curated"
    run_step(
        "2. train tokenizer",
        _cli("tokenizer", "train", "--input", str(curated), "--vocab-size", str(args.vocab_size),
             "--out", str(out / "tokenizer")),
        timings,
    )
    run_step(
        "3. tokenize",
        _cli("tokenize", "--tokenizer", str(out / "tokenizer"), "--input", str(curated),
             "--out", str(out / "tokens"), "--source-field", "source", "--overwrite"),
        timings,
    )
    mixture = write_mixture(out / "tokens", out / "mixture.yaml")
    run_step("4. plan the mixture", _cli("mix", "plan", str(mixture)), timings)
    run_step(
        "5. stream phase-mixed batches",
        # A pool of 64 documents: the demo's phases are only a few million tokens, so a larger
        # pool would still hold much of the previous phase's mixture when a phase switches.
        _cli("mix", "report", str(mixture), "--seq-len", "1024", "--batch-size", "8", "--buffer-docs", "64",
             "--out", str(out / "mix-report")),
        timings,
    )
    run_step(
        "6. batch heterogeneity: RSDB vs sequential packing",
        [sys.executable, "benchmarks/bh_experiment.py", "--quick", "--tokens", str(out / "tokens"),
         "--out", str(out / "bh")],
        timings,
    )

    total = time.perf_counter() - started
    print("\n=== demo finished ===")
    for title, secs in timings.items():
        print(f"  {title:<55} {secs:7.1f}s")
    print(f"  {'total':<55} {total:7.1f}s")
    print(f"outputs: {out.resolve()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
