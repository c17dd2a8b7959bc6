"""Normalize: Unicode NFC, control characters, line endings; reject empty, broken or giant documents.

Runs first so every later stage (hashes, filters, language ID) sees one canonical
form of the text. Cheap: ``unicodedata.is_normalized`` short-cuts the common case.

"Empty" means nothing visible: a document made only of whitespace and invisible
characters (zero-width spaces and joiners, BOMs, bidi marks, soft hyphens, variation
selectors, Hangul fillers, the braille blank: Unicode categories Cc, Cf, Zs, Zl, Zp and
the Default_Ignorable_Code_Point set) is rejected as ``empty``, like whitespace-only
text. The check stops at the first visible character, so it costs nothing on real text.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Literal

import pyarrow as pa
from pydantic import Field

from pipeline.stages.base import Filter, FilterConfig, FilterOutput, register_stage

# C0/C1 controls except TAB and LF (CR is handled as a line ending first), plus DEL.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_CRLF = re.compile("\r\n?")
_TRAILING_WS = re.compile(r"[ \t]+(?=\n)")
_BLANK_RUN = re.compile(r"\n{3,}")

_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zs", "Zl", "Zp"})
# Default_Ignorable_Code_Point (Unicode DerivedCoreProperties) outside the categories above
# (Lo/Mn/Cn fillers and selectors), plus U+2800 BRAILLE PATTERN BLANK, a favourite of spam.
_IGNORABLE_RANGES = ((0x034F, 0x034F), (0x115F, 0x1160), (0x17B4, 0x17B5), (0x180B, 0x180F), (0x2060, 0x206F),
                     (0x2800, 0x2800), (0x3164, 0x3164), (0xFE00, 0xFE0F), (0xFFA0, 0xFFA0), (0xFFF0, 0xFFF8), (0x1BCA0, 0x1BCA3),
                     (0x1D173, 0x1D17A), (0xE0000, 0xE0FFF))
# Characters that may be visible: everything except whitespace and the common invisible
# ones. A match is then confirmed with unicodedata (a few rare Cf characters get there).
_MAYBE_VISIBLE = re.compile(
    r"[^\s\x00-\x1f\x7f-\x9f\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u206f\ufeff"
    + "".join(f"\\U{a:08x}-\\U{b:08x}" for a, b in _IGNORABLE_RANGES) + "]"
)


def is_invisible(ch: str) -> bool:
    """True for a character that renders as nothing (or blank space).

    >>> [is_invisible(c) for c in ("\u200b", "\ufeff", " ", "\u3164", "a", "\u0301")]
    [True, True, True, True, False, False]
    """
    cp = ord(ch)
    if ch.isspace() or unicodedata.category(ch) in _INVISIBLE_CATEGORIES:
        return True
    return any(a <= cp <= b for a, b in _IGNORABLE_RANGES)


def has_visible(text: str) -> bool:
    """Whether ``text`` holds at least one visible character (stops at the first one).

    >>> has_visible("\u200b\ufeff \u2060\u00a0"), has_visible("\u200bhi")
    (False, True)
    """
    return any(not is_invisible(m.group()) for m in _MAYBE_VISIBLE.finditer(text))


class NormalizeConfig(FilterConfig):
    form: Literal["NFC", "NFKC", "none"] = "NFC"
    strip_control: bool = True
    fix_line_endings: bool = True
    strip_trailing_space: bool = True
    max_blank_lines: int | None = Field(None, ge=0, description="collapse longer runs of blank lines (None keeps them)")
    min_chars: int = Field(1, ge=0, description="shorter documents are rejected as 'empty'")
    max_chars: int = Field(10_000_000, gt=0, description="longer documents are rejected as 'too_long'")
    max_replacement_ratio: float = Field(0.01, ge=0, le=1,
                                         description="share of U+FFFD above which a document counts as broken UTF-8")


@register_stage
class Normalize(Filter):
    """Canonical text, or a reason: ``empty``, ``too_long``, ``invalid_utf8``."""

    name = "normalize"
    Config = NormalizeConfig
    signal_types = {"n_chars": pa.int64()}

    def keep_batch(self, table: pa.Table) -> FilterOutput:
        c: NormalizeConfig = self.config  # type: ignore[assignment]
        texts = table.column("text").to_pylist()
        out: list[str] = []
        reasons: list[str | None] = []
        n_chars: list[int] = []
        blank = _BLANK_RUN if c.max_blank_lines is not None else None
        blank_sub = "\n" * (c.max_blank_lines + 1) if c.max_blank_lines is not None else ""
        for t in texts:
            if t is None:
                out.append(t)
                reasons.append("empty")
                n_chars.append(0)
                continue
            try:
                t.encode("utf-8")
            except UnicodeEncodeError:
                t = t.encode("utf-8", "replace").decode("utf-8")
            if c.fix_line_endings and "\r" in t:
                t = _CRLF.sub("\n", t)
            if c.strip_control:
                t = _CONTROL.sub("", t)
            if c.form != "none" and not unicodedata.is_normalized(c.form, t):
                t = unicodedata.normalize(c.form, t)
            if c.strip_trailing_space:
                t = _TRAILING_WS.sub("", t).strip()
            if blank is not None and c.max_blank_lines is not None:
                t = blank.sub(blank_sub, t) if c.max_blank_lines >= 1 else re.sub(r"\n{2,}", "\n", t)
            n = len(t)
            out.append(t)
            n_chars.append(n)
            if n < max(c.min_chars, 1) or not has_visible(t):
                reasons.append("empty")
            elif n > c.max_chars:
                reasons.append("too_long")
            elif "\ufffd" in t and t.count("\ufffd") / n > c.max_replacement_ratio:
                reasons.append("invalid_utf8")
            else:
                reasons.append(None)
        return FilterOutput(reasons, {"n_chars": n_chars}, text=out)
