"""Split long documents into chunks that fit the model's context, by tokens.

A chunk must leave room for the prompt template and the completion:
``budget = context_length - max_tokens - template_tokens - margin``. Documents
are cut at the coarsest boundary that fits: paragraphs, then lines, then
sentences, then (for a single over-long sentence, e.g. minified code) at a token
boundary found by bisection on characters. Chunks concatenate back to the exact
input (``"".join(chunks) == text``), so nothing is lost or reordered, and
rephrased chunks are reassembled in the same order.

The trade-off: per-chunk rephrasing loses cross-chunk context (a pronoun whose
referent is in the previous chunk), which is why the budget is filled greedily
and the coarsest boundary wins.
"""

from __future__ import annotations

import re
from typing import Callable, Sequence

CountFn = Callable[[str], int]

_LEVELS = [
    re.compile(r"(?<=\n\n)"),  # paragraphs (separator stays with the left piece)
    re.compile(r"(?<=\n)"),  # lines
    re.compile(r"(?<=[.!?;。！？；])\s*"),  # sentences
]


def chunk_budget(context_length: int, max_tokens: int, template_tokens: int, margin: int = 16) -> int:
    """Tokens of document text a chunk may hold."""
    return context_length - max_tokens - template_tokens - margin


def _split_keep(text: str, pattern: re.Pattern) -> list[str]:
    cuts = sorted({m.end() for m in pattern.finditer(text) if 0 < m.end() < len(text)})
    pieces, start = [], 0
    for c in cuts:
        pieces.append(text[start:c])
        start = c
    pieces.append(text[start:])
    return [p for p in pieces if p]


def _hard_split(text: str, count: CountFn, budget: int) -> list[str]:
    out = []
    while text:
        if count(text) <= budget:
            out.append(text)
            break
        lo, hi = 1, len(text)  # largest prefix that fits
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if count(text[:mid]) <= budget:
                lo = mid
            else:
                hi = mid - 1
        out.append(text[:lo])
        text = text[lo:]
    return out


def _pieces(text: str, count: CountFn, budget: int, level: int) -> list[str]:
    """Pieces each within budget, at the coarsest boundary possible."""
    if count(text) <= budget:
        return [text]
    if level >= len(_LEVELS):
        return _hard_split(text, count, budget)
    out = []
    for piece in _split_keep(text, _LEVELS[level]):
        out.extend(_pieces(piece, count, budget, level + 1))
    return out


def split_by_tokens(text: str, count: CountFn, budget: int) -> list[str]:
    """Split ``text`` into chunks of at most ``budget`` tokens that join back to ``text``.

    Args:
        text: the document.
        count: token counter, e.g. ``lambda s: len(tok.encode(s, add_special_tokens=False))``.
        budget: maximum tokens per chunk (>= 1).

    >>> split_by_tokens("aa bb. cc dd.", lambda s: len(s.split()), 2)
    ['aa bb. ', 'cc dd.']
    """
    if budget < 1:
        raise ValueError(f"chunk budget must be >= 1 token, got {budget}: the prompt and max_tokens fill the context")
    if not text:
        return [text]
    pieces = _pieces(text, count, budget, 0)
    chunks: list[str] = []
    cur, cur_n = "", 0
    for p in pieces:
        n = count(p)
        if cur and cur_n + n > budget:
            chunks.append(cur)
            cur, cur_n = "", 0
        cur += p
        cur_n += n
        if cur_n > budget:  # token merges across the seam made it longer: recount exactly
            cur_n = count(cur)
            if cur_n > budget:
                chunks.extend(_hard_split(cur, count, budget)[:-1])
                cur = _hard_split(cur, count, budget)[-1]
                cur_n = count(cur)
    if cur:
        chunks.append(cur)
    return chunks


def reassemble(parts: Sequence[str], separator: str = "\n\n") -> str:
    """Join rephrased chunks in order, one separator between non-empty parts."""
    return separator.join(p.strip() for p in parts if p and p.strip())
