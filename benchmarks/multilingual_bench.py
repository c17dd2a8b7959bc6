"""Per-language quality rules: agreement with FineWeb 2 (DataTrove), speed, and keep rates vs the English rules.

For every language with a shipped rule set, the documents of the corpus labelled with
it (the corpus' own ``lang`` column; ``zh-Hans``/``zh-Hant`` count as ``zh``) go through

* ours: the ``multilingual_quality`` stage's rule set for that language;
* FineWeb 2: DataTrove's GopherRepetitionFilter -> FineWebQualityFilter -> GopherQualityFilter
  configured exactly as ``fineweb-2-pipeline.py`` configures them, from the same
  thresholds, with ``language=<lang_script>`` (DataTrove's word tokenizer for it);
  Korean with ``KiwiTokenizer(model_type="cong")`` as the ``sbg`` model is no longer shipped;
* English rules: the ``en`` rule set (what the ``quality`` stage minus C4 decides) on the same text.

Prints one JSON line per language: docs, MB, keep rate with FineWeb 2's rules and with the
English rules, the share of documents where ours and DataTrove decide the same, MB/s per
CPU-second for ours, DataTrove and the English rules (CPU time of this one process; each
side's word splitter is loaded before timing), and the disagreements (id, both reasons).
``uptime``'s load average is printed first.

    .venv/bin/python benchmarks/multilingual_bench.py [--corpus PATH] [--langs de,ja] [--show 5]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from curation_bench import emit, load_corpus  # noqa: E402


def label_of(row: dict) -> str | None:
    lang = row.get("lang")
    return None if lang is None else lang.split("-")[0].lower()


def datatrove_chain(code: str):
    """DataTrove's three filters as FineWeb 2 ran them for one language (English: FineWeb's defaults)."""
    from datatrove.pipeline.filters import FineWebQualityFilter, GopherQualityFilter, GopherRepetitionFilter
    from datatrove.utils.word_tokenizers import KiwiTokenizer

    from pipeline.stages.filters.multilingual import fineweb2_data

    if code == "en":
        return [GopherRepetitionFilter(), FineWebQualityFilter(), GopherQualityFilter()]
    e = fineweb2_data()["languages"][code]
    lang = KiwiTokenizer(model_type="cong") if code == "ko" else e["fineweb2_config"]
    return [
        GopherRepetitionFilter(language=lang, dup_para_frac=0, dup_line_char_frac=0, dup_para_char_frac=0,
                               dup_line_frac=e["dup_line_frac"], top_n_grams=e["top_n_grams"],
                               dup_n_grams=e["dup_n_grams"]),
        FineWebQualityFilter(language=lang, short_line_thr=999, char_duplicates_ratio=0.1,
                             line_punct_thr=e["line_punct_thr"], new_line_ratio=e["new_line_ratio"]),
        GopherQualityFilter(language=lang, max_avg_word_length=e["max_avg_word_length"],
                            min_avg_word_length=e["min_avg_word_length"], stop_words=e["stopwords"],
                            max_non_alpha_words_ratio=e["max_non_alpha_words_ratio"], min_stop_words=2),
    ]


def datatrove_decide(chain, doc_id: str, text: str) -> str | None:
    from datatrove.data import Document

    doc = Document(text=text, id=doc_id)
    for f in chain:
        out = f.filter(doc)
        if out is not True:
            return out[1] if isinstance(out, tuple) else type(f).__name__
    return None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", default=str(REPO.parent / "shared" / "corpus" / "demo.jsonl.zst"))
    ap.add_argument("--langs", default=None, help="comma-separated codes (default: every shipped one in the corpus)")
    ap.add_argument("--show", type=int, default=5, help="disagreements listed per language")
    args = ap.parse_args()

    from pipeline.stages.filters.multilingual import MultilingualQuality, MultilingualQualityConfig

    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(f"# {load}", flush=True)
    ours = MultilingualQuality(MultilingualQualityConfig())
    english = MultilingualQuality(MultilingualQualityConfig(languages=["en"], fallback="en"))
    rows = load_corpus(Path(args.corpus), None)
    by_lang: dict[str, list[dict]] = {}
    for r in rows:
        code = label_of(r)
        if code in ours.rules:
            by_lang.setdefault(code, []).append(r)
    wanted = args.langs.split(",") if args.langs else sorted(by_lang)
    total = {"docs": 0, "same": 0}
    for code in wanted:
        docs = by_lang.get(code, [])
        if not docs:
            emit(name=f"multilingual/{code}", docs=0, note="no documents with this label in the corpus")
            continue
        mb = sum(len(d["text"].encode()) for d in docs) / 1e6
        chain = datatrove_chain(code)
        ours.evaluate("warm up the splitter. 暖机", code)
        datatrove_decide(chain, "warm", "warm up the splitter. 暖机")
        t0 = time.process_time()
        mine = [ours.evaluate(d["text"], code)[0] for d in docs]
        t_ours = time.process_time() - t0
        t0 = time.process_time()
        theirs = [datatrove_decide(chain, d["id"], d["text"]) for d in docs]
        t_dt = time.process_time() - t0
        t0 = time.process_time()
        eng = [english.evaluate(d["text"], "en")[0] for d in docs]
        t_en = time.process_time() - t0
        same = sum((a is None) == (b is None) for a, b in zip(mine, theirs))
        total["docs"] += len(docs)
        total["same"] += same
        diffs = [{"id": d["id"], "ours": a, "datatrove": b}
                 for d, a, b in zip(docs, mine, theirs) if (a is None) != (b is None)]
        emit(name=f"multilingual/{code}", docs=len(docs), mb=round(mb, 3),
             keep_fineweb2=round(sum(a is None for a in mine) / len(docs), 3),
             keep_datatrove=round(sum(b is None for b in theirs) / len(docs), 3),
             keep_english_rules=round(sum(a is None for a in eng) / len(docs), 3),
             decisions_changed_vs_english=sum((a is None) != (b is None) for a, b in zip(mine, eng)),
             same_decision=round(same / len(docs), 4), disagreements=len(diffs),
             ours_mb_s=round(mb / max(t_ours, 1e-9), 2), datatrove_mb_s=round(mb / max(t_dt, 1e-9), 2),
             english_rules_mb_s=round(mb / max(t_en, 1e-9), 2), show=diffs[: args.show])
    if total["docs"]:
        emit(name="multilingual/all", docs=total["docs"], same_decision=round(total["same"] / total["docs"], 4),
             pid=os.getpid())


if __name__ == "__main__":
    main()
