"""Decontamination stage: recall per kind of planted copy, false positives on clean text, speed, index growth.

Eval set: ``--passages`` windows of 30-60 words cut from real prose documents of the demo
corpus (space-separated languages), written to a JSONL file and loaded by the stage as any
eval set is. Each passage is then planted into a different real host document (none of
the passages' source documents) in four ways:

* ``verbatim``: inserted at a sentence boundary as it is;
* ``line_wrapped``: re-wrapped at a random width of 30-70 characters;
* ``re_punctuated``: punctuation swapped (``,`` -> `` ;``, ``.`` -> ``!``), upper-cased, spaces doubled;
* ``partial_quote``: 15-25 consecutive words of it, in quotes.

Reported per kind: recall of the stage and of a naive matcher (the passage, or the quoted
words, as an exact substring). False positives: clean documents (every corpus document
that is neither a host nor a translation of a passage's source page) the stage rejects, with examples (a corpus
may hold real shared text, such as licence boilerplate; ``real_shared_text`` counts the
rejections whose n-gram is in a passage, ``hash_collisions`` the rest). Speed: MB/s per CPU-second of
``process`` on the clean documents. Growth: index build time, distinct n-grams and index
bytes at 1x and 8x the passages.

    .venv/bin/python benchmarks/decontam_bench.py [--passages 300] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import random
import re
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pyarrow as pa

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from curation_bench import emit, load_corpus  # noqa: E402

PROSE = ("web-docs", "docs-rst", "fiction-ish")
CJK = re.compile("[\u3040-\u30ff\u4e00-\u9fff\uac00-\ud7af]")


def windows(rows: list[dict], n: int, rng: random.Random) -> list[tuple[str, str]]:
    """(source id, passage) pairs: ``n`` word windows from distinct documents (cycling when needed)."""
    out: list[tuple[str, str]] = []
    pool = [r for r in rows if len(r["text"].split()) >= 80]
    rng.shuffle(pool)
    i = 0
    while len(out) < n and pool:
        r = pool[i % len(pool)]
        words = r["text"].split()
        k = rng.randint(30, 60)
        start = rng.randint(0, len(words) - k)
        out.append((r["id"], " ".join(words[start:start + k])))
        i += 1
    return out


def page(doc_id: str) -> str:
    """A document's page name, the same across the corpus' translations (``.../de-DE/sect.x.html``)."""
    return doc_id.rsplit("/", 1)[-1]


def repunctuate(p: str) -> str:
    return p.upper().replace(",", " ;").replace(".", "!").replace(" ", "  ").replace("'", "\u2019")


def insert(host: str, snippet: str, rng: random.Random) -> str:
    cuts = [m.end() for m in re.finditer(r"[.!?]\s", host)] or [len(host)]
    at = rng.choice(cuts)
    return host[:at] + "\n" + snippet + "\n" + host[at:]


def build(path: Path, n: int):
    from pipeline.stages.decontaminate import Decontaminate, DecontaminateConfig

    t0 = time.perf_counter()
    st = Decontaminate(DecontaminateConfig(eval_sets=[{"name": "planted", "paths": [str(path)]}]))
    return st, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", default=str(REPO.parent / "shared" / "corpus" / "demo.jsonl.zst"))
    ap.add_argument("--passages", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    print("# " + subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(), flush=True)
    rng = random.Random(args.seed)
    rows = load_corpus(Path(args.corpus), None)
    prose = [r for r in rows if r["source"] in PROSE and not CJK.search(r["text"][:2000])]
    rng.shuffle(prose)
    sources, hosts_pool = prose[: len(prose) // 2], prose[len(prose) // 2:]
    passages = windows(sources, args.passages, rng)
    used_sources = {s for s, _ in passages}
    tmp = Path(tempfile.mkdtemp(prefix="decontam-bench-"))
    ev = tmp / "planted.jsonl"
    ev.write_text("".join(json.dumps({"text": p}) + "\n" for _, p in passages))
    stage, build_s = build(ev, len(passages))

    kinds = {"verbatim": lambda p: p, "line_wrapped": lambda p: textwrap.fill(p, width=rng.randint(30, 70)),
             "re_punctuated": repunctuate,
             "partial_quote": lambda p: '"' + " ".join(p.split()[3:3 + rng.randint(15, 25)]) + '"'}
    hosts = [h for h in hosts_pool if h["id"] not in used_sources]
    for kind, make in kinds.items():
        docs, naive = [], 0
        for j, (_, p) in enumerate(passages):
            host = hosts[j % len(hosts)]["text"]
            snippet = make(p)
            doc = insert(host, snippet, rng)
            docs.append(doc)
            naive += (p if kind != "partial_quote" else snippet.strip('"')) in doc
        res = stage.process(pa.table({"id": [str(i) for i in range(len(docs))], "text": docs}))
        emit(name=f"decontam/planted/{kind}", planted=len(docs), caught=res.rejected.num_rows,
             recall=round(res.rejected.num_rows / len(docs), 4), naive_recall=round(naive / len(docs), 4))
    host_ids = {h["id"] for h in hosts[: len(passages)]}
    # The corpus holds the same page in several languages (untranslated parts shared):
    # a page is clean only if no translation of it gave a passage.
    source_pages = {page(i) for i in used_sources}
    clean = [r for r in rows if r["id"] not in host_ids and page(r["id"]) not in source_pages]
    table = pa.table({"id": [r["id"] for r in clean], "text": [r["text"] for r in clean]})
    mb = sum(len(r["text"].encode()) for r in clean) / 1e6
    t0 = time.process_time()
    res = stage.process(table)
    cpu = time.process_time() - t0
    from pipeline.stages.decontaminate import normalize_tokens

    fps = res.rejected.select(["id", "decontam_ngram"]).to_pylist()
    normalized = "\n".join(" ".join(normalize_tokens(p)) for _, p in passages)
    shared = sum(f["decontam_ngram"] in normalized for f in fps)  # the n-gram really is in a passage
    emit(name="decontam/clean", docs=len(clean), mb=round(mb, 2), false_positives=res.rejected.num_rows,
         real_shared_text=shared, hash_collisions=len(fps) - shared, examples=fps[:3],
         fp_rate=round(res.rejected.num_rows / len(clean), 5), mb_s=round(mb / max(cpu, 1e-9), 2))
    for scale in (1, 8):
        ps = windows(sources, args.passages * scale, random.Random(args.seed + scale))
        path = tmp / f"x{scale}.jsonl"
        path.write_text("".join(json.dumps({"text": p}) + "\n" for _, p in ps))
        st, secs = build(path, len(ps))
        emit(name=f"decontam/index/x{scale}", passages=len(ps), distinct_ngrams=int(len(st.index.hashes)),
             index_bytes=int(st.index.hashes.nbytes + st.index.sets.nbytes), build_s=round(secs, 3))


if __name__ == "__main__":
    main()
