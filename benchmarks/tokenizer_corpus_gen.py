"""Seeded synthetic corpus whose vocabulary keeps growing as real text's does.

    .venv/bin/python benchmarks/tokenizer_corpus_gen.py --out /tmp/gen --gb 8 --procs 2

Writes ``shard-00000.txt`` ... of ``--shard-mb`` MB each; shard ``i`` depends only on
``(seed, i)``, so the first ``k`` shards of an 8 GB run are the 1 GB corpus of a
1 GB run, and shards can be written in parallel.

Model: each paragraph (100 words) is in one of eight "scripts" (Latin, Cyrillic,
code identifiers, Arabic, Devanagari, Hangul, Han+kana without spaces, Thai
without spaces; weights below). A word is drawn by Zipf-Mandelbrot rank
(``numpy.random.zipf(s)``, spread over 4 neighbouring ids), and word id ``w`` is
spelled as the base-S digits of ``w + 1`` over the script's S syllables, so
frequent words are short. Ids past the 2^18-word table are compounds of two table
words, which keeps the number of distinct words growing without bound: with
``s = 1.25`` the distinct words of N tokens grow about as N^0.8 (Heaps' law; real
corpora are 0.4-0.8). Punctuation (8%, 18% in the scripts without spaces, which
therefore form long pre-tokens between punctuation as real CJK and Thai do),
capitalised words (5%) and numbers (3%) are mixed in.
"""

from __future__ import annotations

import argparse
import itertools
import multiprocessing as mp
import os
import time
from pathlib import Path

import numpy as np

TABLE = 1 << 18
PARAGRAPH = 100


def _syllables() -> dict[str, tuple[list[str], str, float, float]]:
    """script -> (syllables, word separator, punctuation rate, weight)."""
    latin = [c + v for c in "bcdfghjklmnprstvwz" for v in ["a", "e", "i", "o", "u", "ai", "ou", "ee"]]
    cyr = [c + v for c in "бвгдзклмнпрстфхцчшщ" for v in "аеиоуыяю"]
    code = [c + v for c in "bcdfgklmnprstx" for v in "aeiou"] + ["_", "get", "set", "id", "x", "buf", "len"]
    arabic = [c + v for c in "بتثجحخدذرزسشصضطظعغفقكلمنهوي" for v in ["", "ا", "و", "ي"]]
    cons = [chr(c) for c in range(0x0915, 0x0939)]
    deva = [c + m for c in cons for m in ["", "ा", "ि", "ी", "ु", "े", "ो", "्"]]
    hangul = [chr(0xAC00 + i * 7) for i in range(1600)]
    han = [chr(0x4E00 + i * 5) for i in range(3000)]
    kana = [chr(c) for c in range(0x3042, 0x3094)] + [chr(c) for c in range(0x30A2, 0x30F4)]
    thai = [c + v for c in "กขคงจฉชซญดตถทนบปผพฟมยรลวสหอฮ" for v in ["", "า", "ิ", "ี", "ุ", "ู", "ั", "ะ"]]
    return {
        "latin": (latin, " ", 0.08, 0.55),
        "cyrillic": (cyr, " ", 0.08, 0.12),
        "code": (code, " ", 0.25, 0.10),
        "arabic": (arabic, " ", 0.08, 0.05),
        "devanagari": (deva, " ", 0.08, 0.05),
        "hangul": (hangul, " ", 0.08, 0.04),
        "cjk": (han + kana * 6, "", 0.18, 0.06),
        "thai": (thai, "", 0.18, 0.03),
    }


PUNCT = {"latin": [",", ".", ";", ":", "?", "!"], "cyrillic": [",", ".", "!", "?"],
         "code": ["(", ")", "):", ".", "=", "==", "->", "[0]", ",", ";", "{", "}"],
         "arabic": ["،", ".", "؟"], "devanagari": ["।", ",", "?"], "hangul": [".", ",", "?"],
         "cjk": ["、", "。", "「", "」", "？"], "thai": [" ", " ", "ๆ"]}


def _table(sylls: list[str]) -> np.ndarray:
    """Spelling of word ids 0..TABLE-1: base-S digits of id+1 over the syllables."""
    S = len(sylls)
    ids = np.arange(1, TABLE + 1)
    syl = np.array(sylls + [""], dtype=object)
    out = np.full(TABLE, "", dtype=object)
    digits = []
    rest = ids.copy()
    while rest.any():
        digits.append(np.where(rest > 0, rest % S, S))
        rest = rest // S
    for d in reversed(digits):
        out = out + syl[d]
    return out


def _words(rng, n, table, cap, punct, prate, s) -> np.ndarray:
    """``n`` words of one script (object array of str), drawn in one vectorised call."""
    rank = rng.zipf(s, n) - 1
    ids = rank * 4 + rng.integers(0, 4, n)
    low = ids % TABLE
    words = table[low]
    big = ids >= TABLE
    if big.any():  # compounds: unbounded vocabulary
        words[big] = words[big] + table[(ids[big] // TABLE) % TABLE]
    m = rng.random(n) < 0.05
    if m.any() and cap is not None:
        words[m] = cap[low[m]]
    m = rng.random(n) < prate
    if m.any():
        words[m] = words[m] + np.array(punct, dtype=object)[rng.integers(0, len(punct), m.sum())]
    m = rng.random(n) < 0.03
    if m.any():
        nums = rng.integers(0, 10 ** rng.integers(1, 8, m.sum()))
        words[m] = np.array([str(x) for x in nums], dtype=object)
    return words


def write_shard(out: Path, index: int, shard_bytes: int, seed: int, s: float) -> int:
    """Write shard ``index`` (about ``shard_bytes`` bytes); returns bytes written."""
    path = out / f"shard-{index:05d}.txt"
    if path.exists() and path.stat().st_size >= shard_bytes:
        return path.stat().st_size
    rng = np.random.default_rng([seed, index])
    scripts = _syllables()
    names = list(scripts)
    weights = np.array([scripts[k][3] for k in names])
    weights /= weights.sum()
    tables, caps = {}, {}
    for k in names:
        # Tables depend on the seed only, not the shard: every shard shares the vocabulary.
        tables[k] = _table(scripts[k][0])
        caps[k] = np.array([w[:1].upper() + w[1:] for w in tables[k]], dtype=object) if k in ("latin", "cyrillic") else None
    written = 0
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        while written < shard_bytes:
            # A block of 2,048 paragraphs: each script's words for the block in one draw.
            which = rng.choice(len(names), 2048, p=weights)
            parts: list[str] = [""] * len(which)
            for k, name in enumerate(names):
                where = np.flatnonzero(which == k)
                if not len(where):
                    continue
                _, sep, prate, _ = scripts[name]
                words = _words(rng, len(where) * PARAGRAPH, tables[name], caps[name], PUNCT[name], prate, s)
                for j, at in enumerate(where):
                    parts[at] = sep.join(words[j * PARAGRAPH:(j + 1) * PARAGRAPH])
            block = "\n\n".join(parts) + "\n\n"
            f.write(block)
            written += len(block.encode("utf-8"))
    os.replace(tmp, path)
    return written


def _job(a):
    return write_shard(*a)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--gb", type=float, required=True, help="total size in GB (1e9 bytes)")
    ap.add_argument("--shard-mb", type=float, default=125.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--zipf", type=float, default=1.25, help="Zipf exponent s (distinct words ~ N^(1/s))")
    ap.add_argument("--procs", type=int, default=2)
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    shard_bytes = int(args.shard_mb * 1e6)
    n = max(1, round(args.gb * 1e9 / shard_bytes))
    started = time.perf_counter()
    jobs = [(args.out, i, shard_bytes, args.seed, args.zipf) for i in range(n)]
    with mp.get_context("spawn").Pool(args.procs) as pool:
        total = sum(itertools.chain(pool.imap(_job, jobs)))
    print(f"{n} shards, {total / 1e9:.2f} GB in {time.perf_counter() - started:.0f} s -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
