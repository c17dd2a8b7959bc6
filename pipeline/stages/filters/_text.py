"""Text features the heuristic rules share, computed once per document.

Word splitting follows the rules of a blank English spaCy tokenizer (the word splitter
DataTrove's Gopher/FineWeb filters use for English): whitespace chunks, then leading
and trailing punctuation peeled off one token at a time, contractions split (``do`` +
``n't``), hyphens and a few other infixes split between letters, URLs and
abbreviations (``e.g.``, ``U.S.``) kept whole. Plain alphanumeric chunks, most of any
text, take a fast path, which is where the speed over running spaCy comes from.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

_URL = re.compile(r"^(?:[a-z][a-z0-9+.-]*://|www\.)\S+$", re.IGNORECASE)
_PREFIX = re.compile(r"^(?:\.\.\.+|…|--+|[\(\[\{<\"'“”‘’«»¿¡$£€¥#&*§%=+~`^|\\—–。？！，、；：～·।،۔؛٪_-])")
_SUFFIX = re.compile(
    r"(?:\.\.\.+|…|[\(\[\{\)\]\}>\"'”’»,;:!?%*|\\。？！，、；：～·।،۔؛٪_]|(?<=[a-z0-9%\)\]\"'”’°])\.|(?<=\w)['’](?:s|S|m|M|d|D|ll|LL|re|RE|ve|VE)"
    r"|(?<=\w)n['’]t|(?<=\w)N['’]T|—|–)$"
)
_INFIX = re.compile(
    r"(?<=[0-9])[+*^](?=[0-9-])|(?<=[0-9])-(?=[0-9-])|(?<=[^\W\d_])\.(?=[^\W\d_]*[A-Z])(?<=[a-z]\.)"
    r"|(?<=[^\W\d_]),(?=[^\W\d_])|(?<=[^\W_])(?:--|---|—|–|-)(?=[^\W\d_])|(?<=[^\W_])[:<>=/](?=[^\W\d_])"
)
# Abbreviations a blank English tokenizer keeps whole (its tokenizer exceptions).
_ABBREV = frozenset(
    "mr. mrs. ms. dr. st. vs. e.g. i.e. a.m. p.m. jan. feb. mar. apr. jun. jul. aug. sep. sept. oct. nov. dec. "
    "inc. ltd. co. corp. jr. sr. mt. no. ph.d. u.s. u.k. n.y. adm. gen. gov. rep. sen. rev. ave. ".split()
)


def _peel(chunk: str, out: list[str]) -> None:
    """Split one non-trivial whitespace chunk into tokens (spaCy-style prefix/suffix/infix)."""
    suffixes: list[str] = []
    while chunk:
        if chunk.isalnum() or _URL.match(chunk) or chunk.lower() in _ABBREV:
            break
        m = _PREFIX.match(chunk)
        if m and m.end() < len(chunk) + 1 and len(chunk) > 1:
            out.append(m.group())
            chunk = chunk[m.end():]
            continue
        m = _SUFFIX.search(chunk)
        if m and len(chunk) > 1 and m.start() > 0:
            suffixes.append(m.group())
            chunk = chunk[: m.start()]
            continue
        break
    if chunk:
        if chunk.isalnum() or _URL.match(chunk):
            out.append(chunk)
        else:
            start = 0
            for m in _INFIX.finditer(chunk):
                if m.start() > start:
                    out.append(chunk[start : m.start()])
                out.append(m.group())
                start = m.end()
            out.append(chunk[start:])
    out.extend(reversed(suffixes))


def split_words(text: str) -> list[str]:
    """Word tokens of ``text`` (punctuation tokens included, whitespace dropped).

    >>> split_words("Don't panic, it's fine...")
    ['Do', "n't", 'panic', ',', 'it', "'s", 'fine', '...']
    """
    out: list[str] = []
    for chunk in text.split():
        if chunk.isalnum():
            out.append(chunk)
        else:
            _peel(chunk, out)
    return out


@lru_cache(1)
def terminal_punctuation() -> tuple[str, ...]:
    """Sentence-terminal characters: Unicode ``Sentence_Terminal`` plus three Khmer signs."""
    try:
        import regex

        st = regex.compile(r"\p{Sentence_Terminal}")
        chars = {chr(c) for c in range(0x30000) if st.match(chr(c))}
    except ImportError:  # the regex package ships with transformers/datasets; a small fallback
        chars = set(".!?。！？؟۔।॥።፧᙮᠃᠉‼‽⁇⁈⁉⸮｡︒﹒﹖﹗．")
    chars |= {"\u17d6", "\u17d9", "\u17da"}
    return tuple(sorted(chars))


def is_symbol_char(ch: str) -> bool:
    return unicodedata.category(ch)[0] in "PSCZ"


@lru_cache(65536)
def is_symbol_word(word: str) -> bool:
    """True when every character is punctuation, a symbol or a control character."""
    return all(unicodedata.category(ch)[0] in "PSCZ" for ch in word)


@lru_cache(65536)
def has_alpha(word: str) -> bool:
    return any(ch.isalpha() for ch in word)
