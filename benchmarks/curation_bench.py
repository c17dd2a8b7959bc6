"""Curation benchmark: heuristic filters side by side with DataTrove, and the whole pipeline on 1 and 2 workers.

Prints one JSON line per measurement. Run from the repo root:

    .venv/bin/python benchmarks/curation_bench.py            # filters + pipeline
    .venv/bin/python benchmarks/curation_bench.py --no-pipeline --limit 1000

Filters: each rule set (Gopher quality, Gopher repetition, C4, FineWeb) runs on every
document of the corpus, once with DataTrove's filter (its defaults: English spaCy word
splitting) and once with ours, in this one process. Timed in CPU seconds of this process
(one core); our per-chunk word cache is emptied before each of our passes, so no pass
profits from an earlier one. Reported: docs/s and MB/s per CPU-second for each, the speed
ratio, the share of documents with the same keep/drop decision, and every disagreement
(id, our reason, DataTrove's reason, the signal behind it and our value of it). Our
combined ``quality`` stage (all four sets, features shared) is timed as well, against the
sum of DataTrove's four timings.

Needs the ``bench`` extra (datatrove, spacy) for the DataTrove side.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                              timeout=5).stdout.strip()
    except OSError:
        return ""


def load_corpus(path: Path, limit: int | None) -> list[dict]:
    import zstandard

    with open(path, "rb") as f:
        reader = io.TextIOWrapper(zstandard.ZstdDecompressor().stream_reader(f), encoding="utf-8")
        rows = [json.loads(line) for line in reader]
    return rows[:limit] if limit else rows


def emit(**kw) -> None:
    kw.setdefault("device", "cpu x1")
    kw.setdefault("commit", commit())
    print(json.dumps(kw), flush=True)


# Which signal a rejection reason comes from, for both sides' reason names.
_SIGNAL_RULES = [
    (r"short_doc|long_doc", "gq_words"), (r"avg_word_len|avg_threshold", "gq_avg_word_len"),
    (r"hash", "gq_hash_ratio"), (r"too_many_ellipsis$|ellipsis_ratio", "gq_ellipsis_ratio"),
    (r"bullet", "gq_bullet_lines"), (r"end_ellipsis|ellipsis_lines", "gq_ellipsis_lines"),
    (r"alpha", "gq_alpha_words"), (r"stop_words", "gq_stop_words"),
    (r"dup_para_frac", "gr_dup_para_frac"), (r"dup_para_char_frac", "gr_dup_para_char_frac"),
    (r"dup_line_frac", "gr_dup_line_frac"), (r"dup_line_char_frac", "gr_dup_line_char_frac"),
    (r"top_(\d+)_?gram", "gr_top_{}gram"), (r"dup(?:licated)?_(\d+)_?(?:n_)?gram", "gr_dup_{}gram"),
    (r"lorem", "c4_lorem_ipsum"), (r"curly", "c4_curly_bracket"), (r"sentences", "c4_sentences"),
    (r"line_punct", "fw_line_punct_ratio"), (r"short_line", "fw_short_line_ratio"),
    (r"char_dup", "fw_char_dup_ratio"), (r"list_ratio", "fw_list_ratio"), (r"empty", "empty"),
]


def signal_of(reason: str | None) -> str | None:
    """The signal behind a rejection reason (ours or DataTrove's wording)."""
    if reason is None:
        return None
    for pattern, name in _SIGNAL_RULES:
        m = re.search(pattern, reason)
        if m:
            return name.format(*m.groups())
    return reason


def bench_filters(rows: list[dict], show: int | None) -> None:
    from datatrove.data import Document
    from datatrove.pipeline.filters import (
        C4QualityFilter,
        FineWebQualityFilter,
        GopherQualityFilter,
        GopherRepetitionFilter,
    )

    from pipeline.stages.filters.heuristics import (
        C4Quality,
        FineWebQuality,
        GopherQuality,
        GopherRepetition,
        Quality,
    )
    import pyarrow as pa

    texts = [r["text"] for r in rows]
    ids = [r["id"] for r in rows]
    pos = {x: i for i, x in enumerate(ids)}
    mb = sum(len(t.encode()) for t in texts) / 1e6
    table = pa.table({"id": ids, "text": texts})
    # DataTrove's filters with their defaults (language="en": spaCy's English word splitter for
    # every document); ours with their defaults, which follow the same rules.
    pairs = {
        "gopher_quality": (GopherQualityFilter(), GopherQuality()),
        "gopher_repetition": (GopherRepetitionFilter(), GopherRepetition()),
        "c4": (C4QualityFilter(), C4Quality()),
        "fineweb": (FineWebQualityFilter(), FineWebQuality()),
    }
    # Warm-up: spaCy's tokenizer loads lazily; our rule tables compile once per process.
    for theirs, ours in pairs.values():
        for t in texts[:20]:
            theirs.filter(Document(text=t, id="w"))
        ours.process(table.slice(0, 20))
    total_theirs = 0.0
    for name, (theirs, ours) in pairs.items():
        started = time.process_time()
        their_reasons = []
        for i, t in enumerate(texts):
            verdict = theirs.filter(Document(text=t, id=ids[i]))
            if verdict is True:
                their_reasons.append(None)
            elif isinstance(verdict, tuple):
                their_reasons.append(verdict[1] or "dropped")
            else:
                their_reasons.append("dropped" if not verdict else None)
        t_theirs = time.process_time() - started
        total_theirs += t_theirs
        ours.clear_caches()  # our per-chunk word cache starts empty for every timed pass
        started = time.process_time()
        res = ours.process(table)
        t_ours = time.process_time() - started
        ours_reasons: list[str | None] = [None] * len(texts)
        for i, r in zip(res.rejected.column("id").to_pylist(), res.rejected.column("reject_reason").to_pylist()):
            ours_reasons[pos[i]] = r
        values: dict[str, dict[str, object]] = {}
        for part in (res.kept, res.rejected):
            cols = [c for c in part.column_names if c not in ("id", "text", "reject_stage", "reject_reason")]
            for row in part.select(["id", *cols]).to_pylist():
                values[row.pop("id")] = row
        disagree = [i for i in range(len(texts)) if (ours_reasons[i] is None) != (their_reasons[i] is None)]
        listed = []
        for i in disagree[:show]:
            signal = signal_of(ours_reasons[i] or their_reasons[i])
            listed.append({"id": ids[i], "ours": ours_reasons[i], "datatrove": their_reasons[i], "signal": signal,
                           "ours_value": values.get(ids[i], {}).get(signal)})
        both = [(a, b) for a, b in zip(ours_reasons, their_reasons) if a is not None and b is not None]
        emit(name=f"filter/{name}", docs=len(texts), mb=round(mb, 2), cpu_s_ours=round(t_ours, 2),
             cpu_s_datatrove=round(t_theirs, 2),
             ours_docs_s=round(len(texts) / t_ours, 1), ours_mb_s=round(mb / t_ours, 3),
             datatrove_docs_s=round(len(texts) / t_theirs, 1), datatrove_mb_s=round(mb / t_theirs, 3),
             speedup=round(t_theirs / t_ours, 2),
             agreement=round(1 - len(disagree) / len(texts), 5), disagreements=len(disagree),
             ours_dropped=sum(r is not None for r in ours_reasons),
             datatrove_dropped=sum(r is not None for r in their_reasons),
             both_dropped_same_signal=sum(signal_of(a) == signal_of(b) for a, b in both), both_dropped=len(both),
             disagreement_list=listed)
    quality = Quality()  # fresh caches
    started = time.process_time()
    quality.process(table)
    t_all = time.process_time() - started
    emit(name="filter/quality_all_four", docs=len(texts), mb=round(mb, 2), ours_mb_s=round(mb / t_all, 3),
         datatrove_mb_s=round(mb / total_theirs, 3), speedup=round(total_theirs / t_all, 2),
         note="ours: one stage sharing features; datatrove: its four filters, each timed over all docs")


def bench_pipeline(corpus: Path, workers_list: list[int]) -> None:
    for workers in workers_list:
        with tempfile.TemporaryDirectory() as tmp:
            cfg = Path(tmp) / "curate.yaml"
            out = Path(tmp) / "out"
            demo = (REPO / "pipeline" / "configs" / "demo.yaml").read_text()
            cfg.write_text(demo)
            cmd = [sys.executable, "-m", "jobs.cli", "curate", "--config", str(cfg),
                   "--set", f"input.paths={json.dumps([str(corpus)])}", "--set", f"output.path={out}",
                   "--set", f"ray.workers={workers}", "--set", "ray.num_cpus=2", "--set", "progress=false"]
            started = time.perf_counter()
            subprocess.run(cmd, check=True, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            secs = time.perf_counter() - started
            from pipeline.manifest import load_manifest

            m = load_manifest(str(out)).to_json()
            mb = m["stages"][0]["bytes_in"] / 1e6
            emit(name=f"pipeline/demo_config/workers={workers}", device=f"cpu x{workers}",
                 docs=m["stages"][0]["docs_in"], mb=round(mb, 2), seconds=round(secs, 1),
                 docs_s=round(m["stages"][0]["docs_in"] / secs, 1), mb_s=round(mb / secs, 3),
                 kept=m["rows"], rejected=m["rejected"]["rows"],
                 note="wall time of `trinity-data curate` incl. Ray start-up")


def map_stages(config: Path, four_rule_sets: bool = False) -> list:
    """The config's per-row (map) stages, built as the runner builds them; global stages left out.

    ``four_rule_sets``: the English ``quality`` stage (Gopher repetition and quality, FineWeb,
    C4) in place of ``multilingual_quality``, with the same ``only``, and no ``pii`` (the
    stages of ``curation_scale_bench.py``)."""
    from pipeline.config import load_config
    from pipeline.stages.base import GlobalStage

    cfg = load_config(config)
    if four_rule_sets:
        specs = []
        for spec in cfg.stages:
            if spec.name == "multilingual_quality":
                spec = spec.model_copy(update={"name": "quality", "options": {"only": spec.options.get("only")}})
            if spec.name != "pii":
                specs.append(spec)
        cfg = cfg.model_copy(update={"stages": specs})
    return [s for s in cfg.build_stages() if not isinstance(s, GlobalStage)]


def corpus_table(rows: list[dict], rename: dict[str, str]):
    import pyarrow as pa

    cols = {k: [r.get(k) for r in rows] for k in rows[0]}
    return pa.table({rename.get(k, k): v for k, v in cols.items()})


def run_map_stages(stages: list, table, batch_rows: int) -> tuple[dict[str, float], dict[str, tuple]]:
    """Every batch through every stage in order, as one unit is: CPU seconds per stage and
    each document's decision (stage, reason) plus a digest of its kept text and signals."""
    import hashlib

    cpu = {s.name: 0.0 for s in stages}
    decisions: dict[str, tuple] = {}
    for start in range(0, table.num_rows, batch_rows):
        part = table.slice(start, batch_rows)
        for s in stages:
            t0 = time.process_time()
            res = s.process(part)
            cpu[s.name] += time.process_time() - t0
            for row in res.rejected.select(["id", "reject_stage", "reject_reason"]).to_pylist():
                decisions[row["id"]] = (row["reject_stage"], row["reject_reason"])
            part = res.kept
        for row in part.to_pylist():
            digest = hashlib.sha1(json.dumps({k: v for k, v in row.items() if k != "id"}, sort_keys=True,
                                             default=str).encode()).hexdigest()[:16]
            decisions[row["id"]] = ("kept", digest)
    return cpu, decisions


def bench_map_stages(rows: list[dict], config: Path, batch_rows: int, profile: int, decisions_out: str | None,
                     decisions_check: str | None, four_rule_sets: bool = False) -> None:
    """MB of input text per CPU-second of each map stage of ``config`` (dedup left out), and in total."""
    import collections

    import yaml

    raw = yaml.safe_load(config.read_text())
    table = corpus_table(rows, raw.get("input", {}).get("rename", {}) or {})
    mb = sum(len(r["text"].encode()) for r in rows) / 1e6
    stages = map_stages(config, four_rule_sets)
    run_map_stages(stages, table.slice(0, 50), batch_rows)  # warm-up: models load, rule tables compile
    stages = map_stages(config, four_rule_sets)  # fresh stages: cold caches, as in a new worker (models stay loaded)
    prof = None
    if profile:
        import cProfile

        prof = cProfile.Profile(time.process_time)
        prof.enable()
    t0 = time.process_time()
    cpu, decisions = run_map_stages(stages, table, batch_rows)
    total = time.process_time() - t0
    if prof is not None:
        import pstats

        prof.disable()
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(profile)
        print(buf.getvalue(), file=sys.stderr)
    outcome = collections.Counter(d[0] if d[0] == "kept" else f"{d[0]}:{d[1]}" for d in decisions.values())
    load = os.getloadavg()
    for name, secs in cpu.items():
        emit(name=f"map_stage/{name}", docs=len(rows), mb=round(mb, 2), cpu_s=round(secs, 2),
             mb_per_cpu_s=round(mb / secs, 2) if secs else None, load_avg=[round(x, 2) for x in load])
    emit(name="map_stages/total", config=str(config.name) + (" (quality, no pii)" if four_rule_sets else ""), stages=[s.name for s in stages], docs=len(rows),
         mb=round(mb, 2), cpu_s=round(total, 2), mb_per_cpu_s=round(mb / total, 3), profiled=bool(profile),
         kept=outcome["kept"], decisions=dict(sorted(outcome.items())), load_avg=[round(x, 2) for x in load],
         note="input text MB per CPU-second of this process, all stages in order on batches of one unit's rows")
    if decisions_out:
        Path(decisions_out).write_text(json.dumps(decisions, sort_keys=True))
    if decisions_check:
        before = json.loads(Path(decisions_check).read_text())
        now = json.loads(json.dumps(decisions))
        differ = sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))
        emit(name="map_stages/decisions_vs_reference", reference=decisions_check, docs=len(now),
             same=len(now) - len(differ), differ=len(differ), first_differing=differ[:10])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", default=str(REPO.parent / "shared" / "corpus" / "demo.jsonl.zst"))
    ap.add_argument("--limit", type=int, default=None, help="use the first N documents")
    ap.add_argument("--show", type=int, default=None, help="disagreements listed per filter (default: all)")
    ap.add_argument("--no-filters", action="store_true")
    ap.add_argument("--no-pipeline", action="store_true")
    ap.add_argument("--map-stages", nargs="?", const=str(REPO / "pipeline" / "configs" / "demo.yaml"), default=None,
                    metavar="CONFIG", help="only time CONFIG's map stages in this process (default: the demo config)")
    ap.add_argument("--four-rule-sets", action="store_true",
                    help="with --map-stages: the quality stage (all four rule sets) for multilingual_quality, no pii")
    ap.add_argument("--batch-rows", type=int, default=500, help="rows per batch for --map-stages (the unit size)")
    ap.add_argument("--profile", type=int, default=0, metavar="N", help="with --map-stages: cProfile, top N functions")
    ap.add_argument("--decisions-out", default=None, help="with --map-stages: write every document's decision here")
    ap.add_argument("--decisions-check", default=None, help="with --map-stages: compare with a --decisions-out file")
    args = ap.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    rows = load_corpus(Path(args.corpus), args.limit)
    if args.map_stages:
        bench_map_stages(rows, Path(args.map_stages), args.batch_rows, args.profile, args.decisions_out,
                         args.decisions_check, args.four_rule_sets)
        return 0
    if not args.no_filters:
        bench_filters(rows, args.show)
    if not args.no_pipeline:
        bench_pipeline(Path(args.corpus), [1, 2])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
