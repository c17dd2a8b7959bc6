"""LLM-judge scoring: an educational-value 0-5 prompt and a robust score parser.

The prompt follows the additive five-point rubric of FineWeb-Edu (Penedo et al.
2024): one point per criterion met, so a score is a count the model can reason
about, and the answer ends with a fixed ``Educational score: N`` line. Models do
not always comply, so :func:`parse_score` accepts the usual variants (bold
markdown, ``N/5``, ``Score = N``, a bare digit, number words) and prefers the
*last* explicit score line, since judges often restate the scale first.
"""

from __future__ import annotations

import re
from typing import Optional

JUDGE_PROMPT_VERSION = 1

JUDGE_PROMPT = """Below is an extract from a document. Judge whether it would be useful for teaching, from primary school to university level, using this additive 5-point scale. Points add up for each criterion met:

- Add 1 point if the extract provides some basic information relevant to an educational topic, even if it also contains irrelevant or commercial content.
- Add another point if it addresses elements relevant to education but does not follow educational standards closely: it may mix educational and non-educational material or give only a superficial overview.
- Award a third point if it suits educational use and introduces key concepts relevant to school curricula; it is coherent, though it may not be comprehensive.
- Grant a fourth point if it is highly relevant and beneficial for learning at a school level, with a clear and consistent writing style, like a chapter of a textbook or a tutorial, with little irrelevant content.
- Bestow a fifth point if it is outstanding for teaching: detailed reasoning, accessible writing, and deep insight into the subject, free of non-educational content.

The extract:
<extract>
{text}
</extract>

Justify your total score in at most 100 words, then conclude with a line in exactly this format: "Educational score: <points>" where <points> is an integer from 0 to 5."""

_NUMBER_WORDS = {"zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5}
_NUM = r"(\d+(?:\.\d+)?|zero|one|two|three|four|five)"
# explicit "score" phrases, most specific first
_EXPLICIT = [
    re.compile(r"educational\s+score\s*[:=\-]?\s*\**\s*" + _NUM, re.I),
    re.compile(r"(?:total|final|overall)?\s*score\s*(?:is|of|:|=|-)?\s*\**\s*" + _NUM + r"\s*(?:/\s*5|out of 5)?", re.I),
    re.compile(r"\b" + _NUM + r"\s*(?:/\s*5|out of 5)\b", re.I),
    re.compile(r"\b" + _NUM + r"\s+points?\b", re.I),
]


def _to_number(tok: str) -> Optional[float]:
    tok = tok.lower()
    if tok in _NUMBER_WORDS:
        return float(_NUMBER_WORDS[tok])
    try:
        return float(tok)
    except ValueError:
        return None


def parse_score(text: str, lo: float = 0.0, hi: float = 5.0) -> Optional[float]:
    """The judge's score in ``[lo, hi]``, or ``None`` when no valid score is found.

    >>> parse_score("Good tutorial.\\nEducational score: 4")
    4.0
    >>> parse_score("**Score:** 3/5")
    3.0
    >>> parse_score("I cannot rate this.") is None
    True
    """
    if not text:
        return None
    for pattern in _EXPLICIT:
        values = [_to_number(m.group(1)) for m in pattern.finditer(text)]
        values = [v for v in values if v is not None and lo <= v <= hi]
        if values:
            return values[-1]
    # last resort: the whole reply is one number (e.g. "3" or "3.")
    m = re.fullmatch(r"\s*\**\s*(\d+(?:\.\d+)?)\s*\**\.?\s*", text)
    if m:
        v = float(m.group(1))
        if lo <= v <= hi:
            return v
    return None


def judge_messages(text: str) -> list[dict[str, str]]:
    """Chat messages asking for the educational score of ``text``."""
    return [{"role": "user", "content": JUDGE_PROMPT.replace("{text}", text)}]
