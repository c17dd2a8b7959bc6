"""Text features the heuristic rules share: words, sentences and character classes.

Word splitting is the algorithm of a blank English spaCy tokenizer (``spacy.blank("en")``),
the splitter DataTrove's Gopher, FineWeb and C4 filters use with their default language,
re-implemented in plain Python on spaCy's own rule data (``rule_data.json``, exported by
``make_rule_data.py``): whitespace chunks; prefixes and suffixes peeled off, special
cases (``don't`` -> ``do`` + ``n't``, ``e.g.``, emoticons) tried at every step; URLs kept
whole; infixes split; finally the special-case matcher that re-joins token runs spelling
a special case. DataTrove then drops whitespace tokens (``strip_strings``); so does
:func:`split_words`.

The rules are applied to every document whatever its language, as DataTrove does when its
filters run with their default ``language="en"``: Chinese or Japanese text without spaces
becomes long "words" split only at punctuation, exactly as in DataTrove. (DataTrove's
per-language tokenizers, e.g. jieba for ``zh``, are in ``_words.py``, which the
``multilingual_quality`` stage uses.)

Speed: a whitespace chunk's tokens depend only on the chunk, so they are cached per chunk
(as spaCy does) on an :class:`EnglishWords` object, which each stage owns; a document is split with ``str.split`` and one dictionary look-up per
chunk. The special-case matcher, which can look across chunks, runs only for documents
where it can change a token.
"""

from __future__ import annotations

import json
import re
import unicodedata
from functools import lru_cache
from itertools import chain, compress, count
from operator import not_
from pathlib import Path
from typing import Any

_DATA = Path(__file__).with_name("rule_data.json")


# The ``lru_cache(1)`` functions of this module hold immutable tables compiled once per
# process from ``rule_data.json`` (their size is fixed by that file, whatever the input;
# compiling the rules takes ~0.15 s, too much for every ``EnglishWords``). Everything that
# grows with the documents (chunk, word and hash tables) is on the stage, bounded.
@lru_cache(1)
def _data() -> dict[str, Any]:
    return json.loads(_DATA.read_text(encoding="utf-8"))


class _Rules:
    """spaCy's English tokenizer rules, compiled."""

    def __init__(self) -> None:
        d = _data()["spacy_en"]
        # Every prefix alternative starts with "^": ``match`` finds what ``search`` finds, without
        # trying every position.
        self.prefix = re.compile(d["prefix"]).match
        self.suffix = _SuffixSearch(d["suffix"])
        # Characters a match can start (prefix, infix) or end (suffix) with: a chunk that
        # has none of them in that place skips the pattern (None: no such shortcut).
        self.prefix_first = _edge_chars(d["prefix"], last=False)
        self.suffix_last = _edge_chars(d["suffix"], last=True)
        self.suffix_last_no_digit = _edge_chars(d["suffix"], last=True, skip_digit_gated=True)
        self.infix_first = _edge_chars(d["infix"], last=False)
        self.infix = re.compile(_guarded(d["infix"], self.infix_first)).finditer
        self.prefix_one, self.suffix_one = _single_char_affixes(d["prefix"], d["suffix"])
        self.url = re.compile(d["url"]).match
        self.specials: dict[str, tuple[str, ...]] = {k: tuple(v) for k, v in d["special_cases"].items()}
        # The special-case matcher's phrases: special cases the affix rules would split
        # (spaCy adds exactly these with its default ``faster_heuristics``), each as the
        # token sequence the string gets without special cases.
        self.phrases: dict[str, tuple[str, ...]] = {}
        for s in self.specials:
            if self._has_affix(s) or " " in s:
                self.phrases[s] = tuple(t for t, _ in _stream(s, self, specials=False))
        self.by_first: dict[str, list[tuple[str, ...]]] = {}
        for p in self.phrases.values():
            self.by_first.setdefault(p[0], []).append(p)
        # Phrases whose retokenization changes tokens (special pieces differ from the phrase).
        self.changing = {p for s, p in self.phrases.items() if self.specials[s] != p}
        self.changing_first = {p[0] for p in self.changing}
        self.changing_pairs = {p[:2] for p in self.changing}  # every phrase has 2+ tokens
        self.changing_by_first: dict[str, list[tuple[str, ...]]] = {}
        for p in self.changing:
            self.changing_by_first.setdefault(p[0], []).append(p)
        self.phrase_string = {p: s for s, p in self.phrases.items()}
        self.max_phrase = max(map(len, self.phrases.values()))
        # Proper heads and tails of phrases: a chunk ending with a head (starting with a
        # tail) may form a phrase with its neighbour's tokens.
        self.phrase_heads = {p[:m] for p in self.phrases.values() for m in range(1, len(p))}
        self.phrase_tails = {p[m:] for p in self.phrases.values() for m in range(1, len(p))}

    def _has_affix(self, s: str) -> bool:
        m = self.prefix(s)
        if m and m.end() > m.start():
            return True
        m = self.suffix(s)
        if m and m.end() > m.start():
            return True
        return any(True for _ in self.infix(s))


def _edge_chars(pattern: str, last: bool, skip_digit_gated: bool = False) -> frozenset[str] | None:
    """The characters any match of ``pattern`` can start with (or end with, ``last``),
    from the parsed pattern; None when the pattern is not simple enough to tell.
    ``skip_digit_gated``: leave out alternatives that need an ASCII digit before them."""
    import sre_constants as c  # noqa: PLC0415
    import sre_parse  # noqa: PLC0415

    def items_edge(items: list) -> set[str] | None:
        seq = [x for x in items if x[0] not in (c.AT, c.ASSERT, c.ASSERT_NOT)]
        if not seq:
            return None
        return node_edge(seq[-1] if last else seq[0])

    def node_edge(node: tuple) -> set[str] | None:
        op, av = node
        if op is c.LITERAL:
            return {chr(av)}
        if op is c.IN:
            out: set[str] = set()
            for sub_op, sub_av in av:
                if sub_op is c.LITERAL:
                    out.add(chr(sub_av))
                elif sub_op is c.RANGE:
                    out.update(chr(x) for x in range(sub_av[0], sub_av[1] + 1))
                else:
                    return None
            return out
        if op is c.BRANCH:
            out = set()
            for alt in av[1]:
                e = items_edge(list(alt))
                if e is None:
                    return None
                out |= e
            return out
        if op in (c.MAX_REPEAT, c.MIN_REPEAT) and av[0] >= 1:
            return items_edge(list(av[2]))
        if op is c.SUBPATTERN:
            return items_edge(list(av[-1]))
        return None

    import warnings  # noqa: PLC0415

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        out: set[str] = set()
        for alt in _top_level_alternatives(pattern):
            parsed = sre_parse.parse(alt)
            if parsed.getwidth()[0] < 1:
                return None
            items = list(parsed)
            if skip_digit_gated and items and items[0][0] is c.ASSERT and items[0][1][0] == -1 and \
                    list(items[0][1][1]) == [(c.IN, [(c.RANGE, (48, 57))])]:
                continue  # "(?<=[0-9])...": cannot match in a chunk without an ASCII digit
            e = items_edge(items)
            if e is None:
                return None
            out |= e
    return frozenset(out)


def _single_char_affixes(prefix: str, suffix: str) -> tuple[frozenset[str], frozenset[str]]:
    """Characters that are always a one-character prefix (suffix) when they start (end) a
    chunk: the first prefix alternative that can start with the character (``re`` takes
    the first alternative that matches) is that bare character; a one-character suffix
    alternative is the bare character and no longer suffix alternative can end with it."""
    import sre_constants as c  # noqa: PLC0415
    import sre_parse  # noqa: PLC0415
    import warnings  # noqa: PLC0415

    def bare(alt: str) -> set[str] | None:
        """The characters of an alternative that is one literal or class and nothing else."""
        items = [x for x in sre_parse.parse(alt) if x[0] is not c.AT]
        if len(items) != 1:
            return None
        op, av = items[0]
        if op is c.LITERAL:
            return {chr(av)}
        if op is c.IN and all(o is c.LITERAL for o, _ in av):
            return {chr(v) for _, v in av}
        return None

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        decided: set[str] = set()
        pre: set[str] = set()
        for alt in _top_level_alternatives(prefix):
            first = _edge_chars(alt, last=False) or set()
            one = bare(alt) or set()
            pre |= {ch for ch in first - decided if ch in one}
            decided |= first
        one_char: set[str] = set()
        longer: set[str] = set()
        for alt in _top_level_alternatives(suffix):
            b = bare(alt)
            if b is not None:
                one_char |= b
            elif sre_parse.parse(alt).getwidth()[1] > 1:
                longer |= _edge_chars(alt, last=True) or set()
    digits = set("0123456789")
    return frozenset(pre - digits), frozenset(one_char - longer - digits)


def _char_class(chars: frozenset[str]) -> str:
    """A regex matching one of ``chars``, fast in Python's ``re``: one class of ranges for
    the Basic Multilingual Plane (a bitmap), the rest behind a one-range guard (``re``
    checks supplementary-plane ranges one by one)."""

    def ranges(points: list[int]) -> str:
        parts, i = [], 0
        while i < len(points):
            j = i
            while j + 1 < len(points) and points[j + 1] == points[j] + 1:
                j += 1
            lo, hi = re.escape(chr(points[i])), re.escape(chr(points[j]))
            parts.append(lo if i == j else f"{lo}-{hi}")
            i = j + 1
        return "[" + "".join(parts) + "]"

    points = sorted(ord(c) for c in chars)
    bmp = [p for p in points if p < 0x10000]
    astral = [p for p in points if p >= 0x10000]
    alts = ([ranges(bmp)] if bmp else []) + (["(?=[\U00010000-\U0010ffff])" + ranges(astral)] if astral else [])
    return "(?:" + "|".join(alts) + ")"


def _guarded(pattern: str, first: frozenset[str] | None) -> str:
    """``pattern`` behind a look-ahead for the characters its matches start with: the same
    matches (the look-ahead holds wherever a match starts), found faster."""
    if not first:
        return pattern
    return f"(?={_char_class(first)})(?:{pattern})"


def _top_level_alternatives(pattern: str) -> list[str]:
    """Split a regex at its top-level ``|`` (outside groups and character classes)."""
    parts, depth, in_class, i, start = [], 0, False, 0, 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            i += 2
            continue
        if in_class:
            if ch == "]":
                in_class = False
        elif ch == "[":
            in_class = True
            if pattern[i + 1 : i + 2] == "]":
                i += 1
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "|" and depth == 0:
            parts.append(pattern[start:i])
            start = i + 1
        i += 1
    parts.append(pattern[start:])
    return parts


class _SuffixSearch:
    """``re.compile(suffix_pattern).search`` (each alternative ends with ``$``), faster.

    The leftmost match of an alternation is the leftmost match of any alternative. The
    alternatives that match at most ``width`` characters can only match in the last
    ``width`` characters, so they are searched from there (look-behinds still see the text
    before); the few unbounded ones (``\\.\\.+$``) are searched over the whole string.
    """

    def __init__(self, pattern: str):
        import sre_parse  # noqa: PLC0415  (deprecated alias, still the parser ``re`` uses)
        import warnings  # noqa: PLC0415

        bounded, unbounded, width = [], [], 0
        for alt in _top_level_alternatives(pattern):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                hi = sre_parse.parse(alt).getwidth()[1]
            if hi < 1000:
                bounded.append(alt)
                width = max(width, hi)
            else:
                unbounded.append(alt)
        self.width = width
        self.bounded = re.compile(_guarded("|".join(bounded), _edge_chars("|".join(bounded), last=False))).search
        self.unbounded = re.compile("|".join(unbounded)).search if unbounded else None
        # Characters an unbounded alternative can end with (None: any).
        self.unbounded_last = _edge_chars("|".join(unbounded), last=True) if unbounded else frozenset()

    def __call__(self, s: str) -> re.Match | None:
        m = self.bounded(s, max(0, len(s) - self.width))
        ul = self.unbounded_last
        if self.unbounded is not None and s and (ul is None or s[-1] in ul):
            u = self.unbounded(s)
            if u is not None and (m is None or u.start() < m.start()):
                return u
        return m


@lru_cache(1)
def _rules() -> _Rules:
    return _Rules()


_DIGITS = re.compile("[0-9]")


def _split_span(s: str, r: _Rules, specials: bool = True) -> tuple[str, ...]:
    """Tokens of one whitespace-free span (spaCy's ``_split_affixes`` + ``_attach_tokens``)."""
    sp = r.specials if specials else _NO_SPECIALS
    if s in sp:
        return sp[s]
    prefixes: list[str] = []
    suffixes: list[str] = []
    pf, inf = r.prefix_first, r.infix_first
    sl = r.suffix_last if _DIGITS.search(s) else r.suffix_last_no_digit
    prefix_match, suffix_search = r.prefix, r.suffix
    last = -1
    n = len(s)
    while n and n != last:
        if s in sp:
            break
        last = n
        pre = 0
        if pf is None or s[0] in pf:
            m = prefix_match(s)
            if m:
                pre = m.end() - m.start()
                if pre:
                    prefix, minus_pre = s[:pre], s[pre:]
                    if minus_pre and minus_pre in sp:
                        s = minus_pre
                        prefixes.append(prefix)
                        break
        suf = 0
        if n > pre and (sl is None or s[-1] in sl):
            m = suffix_search(s[pre:] if pre else s)
            if m:
                suf = m.end() - m.start()
                if suf:
                    suffix, minus_suf = s[-suf:], s[:-suf]
                    if minus_suf and minus_suf in sp:
                        s = minus_suf
                        suffixes.append(suffix)
                        break
        if pre and suf and pre + suf <= n:
            s = s[pre:-suf]
            prefixes.append(prefix)
            suffixes.append(suffix)
        elif pre:
            s = minus_pre
            prefixes.append(prefix)
        elif suf:
            s = minus_suf
            suffixes.append(suffix)
        n = len(s)
    out = prefixes
    if s:
        if s in sp:
            out.extend(sp[s])
        elif (inf is not None and inf.isdisjoint(s)) or r.url(s):
            out.append(s)  # no infix can split it, or a URL: one token either way
        else:
            start = 0
            for m in r.infix(s):
                a, b = m.start(), m.end()
                if a == 0:
                    continue
                if a != start:
                    out.append(s[start:a])
                if a != b:
                    out.append(s[a:b])
                start = b
            if s[start:]:
                out.append(s[start:])
    if suffixes:
        out.extend(reversed(suffixes))
    return tuple(out)


_NO_SPECIALS: dict[str, tuple[str, ...]] = {}
_RUNS = re.compile(r"\S+|\s+")


def _stream(text: str, r: _Rules, specials: bool = True) -> list[tuple[str, bool]]:
    """spaCy's token stream before the special-case matcher: (token, followed by one space).

    Whitespace other than the single space after a token becomes tokens of its own.
    """
    out: list[tuple[str, bool]] = []
    for m in _RUNS.finditer(text):
        s = m.group()
        if s[0].isspace():
            if out and s[0] == " ":
                out[-1] = (out[-1][0], True)
                s = s[1:]
            if not s:
                continue
        out.extend((t, False) for t in _split_span(s, r, specials))
    return out


def _apply_special_matcher(stream: list[tuple[str, bool]], r: _Rules) -> list[str]:
    """spaCy's ``_apply_special_cases``: find phrase matches, keep non-overlapping ones
    (longest first, then leftmost; spaCy checks only a span's first and last token), and
    re-split each kept span whose text is a special case."""
    toks = [t for t, _ in stream]
    n = len(toks)
    matches: list[tuple[int, int]] = []
    by_first = r.by_first
    for i, t in enumerate(toks):
        for p in by_first.get(t, ()):
            k = len(p)
            if i + k <= n and tuple(toks[i : i + k]) == p:
                matches.append((i, i + k))
    if not matches:
        return toks
    matches.sort(key=lambda m: (m[1] - m[0], -m[0]))
    seen: set[int] = set()
    kept: dict[int, int] = {}
    for a, b in reversed(matches):
        if a not in seen and b - 1 not in seen:
            kept[a] = b
        seen.update(range(a, b))
    out: list[str] = []
    i = 0
    while i < n:
        b = kept.get(i)
        if b is None:
            out.append(toks[i])
            i += 1
            continue
        text = "".join(t + (" " if sp and j < b - 1 else "") for j, (t, sp) in enumerate(stream[i:b], start=i))
        out.extend(r.specials.get(text, toks[i:b]))
        i = b
    return out


def spacy_tokens(text: str) -> list[str]:
    """All tokens spaCy's English tokenizer makes of ``text``, whitespace tokens included."""
    r = _rules()
    return _apply_special_matcher(_stream(text, r), r)


#: one ``_matchy`` entry: (tokens when nothing outside the chunk interferes, where the kept
#: phrases start, whether the left / right neighbour's tokens could change that)
_Matchy = tuple[tuple[str, ...], frozenset[int], bool, bool]


def _plain(s: str, r: _Rules) -> bool:
    """No prefix, suffix or infix can match anywhere in ``s`` (it is one token, URL or not)."""
    pf, inf, sl = r.prefix_first, r.infix_first, r.suffix_last
    if pf is None or sl is None or inf is None or not s or s[0] in pf or not inf.isdisjoint(s):
        return False
    last = s[-1]
    if last not in sl:
        return True
    # ``suffix_last_no_digit`` is a subset of ``suffix_last``: the digit test decides the rest
    return last not in r.suffix_last_no_digit and not _DIGITS.search(s)


def _fill(chunk: str, r: _Rules, cache: dict[str, tuple[str, ...]], matchy: dict[str, _Matchy]) -> tuple[str, ...]:
    sp = r.specials
    toks = sp.get(chunk)
    if toks is None:
        first, last = chunk[0], chunk[-1]
        if _plain(chunk, r):
            toks = (chunk,)
        # The common shapes "word," "(word" "(word)", worked out as _split_span would:
        elif last in r.suffix_one and _plain(chunk[:-1], r):
            word = chunk[:-1]
            toks = sp.get(word, (word,)) + (last,)
        elif first in r.prefix_one and _plain(chunk[1:], r):
            word = chunk[1:]
            toks = (first,) + sp.get(word, (word,))
        elif first in r.prefix_one and last in r.suffix_one and _plain(chunk[1:-1], r):
            word = chunk[1:-1]
            if chunk[1:] in sp:
                toks = (first,) + sp[chunk[1:]]
            elif chunk[:-1] in sp:
                toks = sp[chunk[:-1]] + (last,)
            else:
                toks = (first,) + sp.get(word, (word,)) + (last,)
        else:
            toks = _split_span(chunk, r)
    if len(toks) > 1 and not r.changing_pairs.isdisjoint(zip(toks, toks[1:])):
        _check_matchy(chunk, toks, r, matchy)
    cache[chunk] = toks
    return toks


def _check_matchy(chunk: str, toks: tuple[str, ...], r: _Rules, matchy: dict[str, _Matchy]) -> None:
    by_first = r.changing_by_first
    for i, t in enumerate(toks):
        for p in by_first.get(t, ()):
            if toks[i : i + len(p)] == p:
                alone, kept = _decide(list(toks), 0, len(toks), r)
                span = r.max_phrase - 1
                left = any(toks[:m] in r.phrase_tails for m in range(1, min(span, len(toks)) + 1))
                right = any(toks[-m:] in r.phrase_heads for m in range(1, min(span, len(toks)) + 1))
                matchy[chunk] = (alone, kept, left, right)
                return


def _decide(window: list[str], a0: int, a1: int, r: _Rules) -> tuple[tuple[str, ...], frozenset[int]]:
    """The tokens of ``window[a0:a1]`` (one chunk, neighbours' tokens around it) after the
    matcher, and the chunk positions where a kept phrase starts.

    A match is kept unless a match spaCy handles first (longer, or as long and further
    left) covers its first or last token; so a chunk is decided from the matches within a
    phrase's length around it. More neighbouring tokens can only block more phrases.
    """
    found = _matches(window, r)
    new = list(window[a0:a1])
    kept = []
    for a, b in sorted(found, reverse=True):
        if a < a0 or b > a1:
            continue
        phrase = tuple(window[a:b])
        if phrase not in r.changing:
            continue
        blocked = any((b2 - a2 > b - a or (b2 - a2 == b - a and a2 < a)) and (a2 <= a < b2 or a2 <= b - 1 < b2)
                      for a2, b2 in found)
        if not blocked:
            new[a - a0 : b - a0] = r.specials[r.phrase_string[phrase]]
            kept.append(a - a0)
    return tuple(new), frozenset(kept)


_WS = re.compile(r"\s+")


def _matches(toks: list[str], r: _Rules) -> list[tuple[int, int]]:
    """Every phrase match in ``toks``."""
    out = []
    n = len(toks)
    for i, t in enumerate(toks):
        for p in r.by_first.get(t, ()):
            k = len(p)
            if i + k <= n and tuple(toks[i : i + k]) == p:
                out.append((i, i + k))
    return out


def _resolve(text: str, chunks: list[str], vals: list[tuple[str, ...]], r: _Rules,
             matchy: dict[str, _Matchy]) -> list[tuple[str, ...]]:
    """Apply the special-case matcher to the chunks where it changes tokens.

    A multi-token phrase never crosses a whitespace token, so chunks separated by anything
    but one space do not interact. A chunk is decided alone (cached) unless its edge tokens
    can start or end a phrase and the neighbours' tokens, taken as joined by one space,
    change the decision; only then are the separators looked at.
    """
    seps: list[str] | None = None
    lead = 1 if text[:1].isspace() else 0
    span = r.max_phrase - 1
    out = list(vals)
    get = matchy.get
    for k in compress(count(), map(matchy.__contains__, chunks)):
        alone, kept, need_left, need_right = get(chunks[k])  # type: ignore[misc]
        out[k] = alone
        if not (need_left or need_right):
            continue
        own = vals[k]
        for exact in (False, True):
            if exact and seps is None:
                seps = _WS.findall(text)
            left: list[str] = []
            j = k - 1
            while need_left and j >= 0 and len(left) < span and (not exact or seps[j + lead] == " "):  # type: ignore[index]
                left[:0] = vals[j]
                j -= 1
            right: list[str] = []
            j = k + 1
            while need_right and j < len(chunks) and len(right) < span and (not exact or seps[j - 1 + lead] == " "):  # type: ignore[index]
                right.extend(vals[j])
                j += 1
            if not left and not right:
                break  # no neighbour joined by one space: decided alone
            left = left[-span:]
            toks, kept_here = _decide(left + list(own) + right[:span], len(left), len(left) + len(own), r)
            if exact:
                out[k] = toks
            elif kept_here == kept:
                break  # the neighbours block nothing (and with fewer of them, neither)
    return out


# --------------------------------------------------------------------------- character classes


@lru_cache(1)
def punctuation_set() -> frozenset[str]:
    """DataTrove's ``PUNCTUATION_SET`` (a word made only of these is a "symbol word")."""
    return frozenset(_data()["datatrove"]["punctuation"])


@lru_cache(1)
def terminal_punctuation() -> tuple[str, ...]:
    """DataTrove's ``TERMINAL_PUNCTUATION`` (FineWeb's line-end characters)."""
    return tuple(_data()["datatrove"]["terminal_punctuation"])


@lru_cache(1)
def sentence_punctuation() -> frozenset[str]:
    """spaCy's sentencizer punctuation (C4's sentence counting)."""
    return frozenset(_data()["spacy_en"]["sentence_punct"])


@lru_cache(1)
def _sentence_punct_re() -> re.Pattern[str]:
    return re.compile("[" + "".join(re.escape(c) for c in sorted(sentence_punctuation())) + "]")


def _is_punct_token(token: str) -> bool:
    return all(unicodedata.category(ch).startswith("P") for ch in token)


def _has_alpha(word: str) -> bool:
    return any(ch.isalpha() for ch in word)


# --------------------------------------------------------------------------- the splitter with its caches


class EnglishWords:
    """DataTrove's English word splitter and character classes, with their caches.

    The caches live on this object, never in the module: each stage holds one (see
    ``_doc.DocCaches``), so two stages in a worker do not share or evict each other's
    tables, and pickling a stage does not ship them (``__getstate__`` drops them). A table
    that reaches ``max_entries`` keys (about 220 bytes each for chunks) is emptied; the
    chunk table only between documents, so a document's chunks stay consistent (it holds
    at most ``max_entries`` plus one document's chunks).

    Args:
        max_entries: the bound of each cache table.
    """

    def __init__(self, max_entries: int = 1 << 19):
        self.max_entries = max_entries
        self._chunks: dict[str, tuple[str, ...]] = {}  # chunk -> tokens before the special-case matcher
        self._matchy: dict[str, _Matchy] = {}  # chunks holding a phrase the matcher re-splits
        self._symbol: dict[str, bool] = {}
        self._alpha: dict[str, bool] = {}
        self._punct: dict[str, bool] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {"max_entries": self.max_entries}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["max_entries"])  # type: ignore[misc]

    def clear(self) -> None:
        """Forget every cached chunk and word (benchmarks time a cold start with this)."""
        self._chunks.clear()
        self._matchy.clear()
        self._symbol.clear()
        self._alpha.clear()
        self._punct.clear()

    def cached_entries(self) -> int:
        """Keys held across the cache tables."""
        return len(self._chunks) + len(self._matchy) + len(self._symbol) + len(self._alpha) + len(self._punct)

    def _chunk_tokens(self, text: str) -> tuple[list[str], list[tuple[str, ...]]]:
        chunks = text.split()
        cache, matchy = self._chunks, self._matchy
        try:
            vals = list(map(cache.__getitem__, chunks))
        except KeyError:
            if len(cache) >= self.max_entries:
                cache.clear()  # between documents: a document's chunks stay consistent
                matchy.clear()
            r = _rules()
            get = cache.get
            vals = list(map(get, chunks))
            for i in list(compress(count(), map(not_, vals))):
                c = chunks[i]
                vals[i] = get(c) or _fill(c, r, cache, matchy)
        if matchy and not matchy.keys().isdisjoint(chunks):
            vals = _resolve(text, chunks, vals, _rules(), matchy)
        return chunks, vals  # type: ignore[return-value]

    def split_chunks(self, text: str) -> list[tuple[str, ...]]:
        """The tokens of each whitespace chunk of ``text`` (special-case matcher applied)."""
        return self._chunk_tokens(text)[1]

    def split(self, text: str) -> list[str]:
        """Word tokens of ``text`` as DataTrove's English ``split_into_words`` returns them."""
        return list(chain.from_iterable(self._chunk_tokens(text)[1]))

    def count(self, text: str) -> int:
        """``len(self.split(text))`` without building the list."""
        return sum(map(len, self._chunk_tokens(text)[1]))

    def _memo(self, table: dict[str, bool], key: str, fn: Any) -> bool:
        v = table.get(key)
        if v is None:
            v = fn(key)
            if len(table) >= self.max_entries:
                table.clear()
            table[key] = v
        return v

    def is_symbol_word(self, word: str) -> bool:
        """True when every character is in DataTrove's punctuation set."""
        v = self._symbol.get(word)
        return self._memo(self._symbol, word, is_symbol_word) if v is None else v

    def has_alpha(self, word: str) -> bool:
        """True when some character is alphabetic (Gopher's "alpha word")."""
        v = self._alpha.get(word)
        return self._memo(self._alpha, word, _has_alpha) if v is None else v

    def is_punct_token(self, token: str) -> bool:
        """spaCy's ``is_punct``: every character in a Unicode punctuation category."""
        v = self._punct.get(token)
        return self._memo(self._punct, token, _is_punct_token) if v is None else v

    def count_sentences(self, line: str) -> int:
        """Sentences spaCy's sentencizer finds in ``line`` (DataTrove's ``split_into_sentences``).

        A new sentence starts at the first token after a sentence-punctuation token that is
        neither punctuation (Unicode P*) nor sentence punctuation; whitespace tokens (any
        whitespace other than one space between words) count as such tokens, as in spaCy.
        """
        if not _sentence_punct_re().search(line, 0, len(line) - 1):
            return 1  # a punctuation token can only be the last one: nothing can follow it
        punct = sentence_punctuation()  # single characters: only a chunk holding one can end a sentence
        chunks, vals = self._chunk_tokens(line)
        seps: list[str] | None = None
        lead = 1 if line[:1].isspace() else 0
        n, done = 1, 0  # chunks before ``done`` are counted
        for k in [k for k, c in enumerate(chunks) if not punct.isdisjoint(c)]:
            if k < done:
                continue
            seen = False
            while True:  # from a chunk that may end a sentence, on while one may be ending
                for tok in vals[k]:
                    if tok in punct:
                        seen = True
                    elif seen and not self.is_punct_token(tok):
                        n += 1
                        seen = False
                if not seen:
                    break  # the chunks up to the next candidate cannot change the count
                if seps is None:
                    seps = _WS.findall(line)
                if k + lead < len(seps):
                    sep = seps[k + lead]
                    if sep != " " and (sep[0] != " " or len(sep) > 1):
                        n += 1  # a whitespace token follows
                        break
                k += 1
                if k == len(chunks):
                    break
            done = k + 1
        return n


# --------------------------------------------------------------------------- one-off calls
# Uncached conveniences for callers that split a few strings (tests, tools); a stage keeps
# an EnglishWords so its caches persist across documents.


def split_words(text: str) -> list[str]:
    """Word tokens of ``text`` as DataTrove's English ``split_into_words`` returns them.

    >>> split_words("Don't panic, it's fine...")
    ['Do', "n't", 'panic', ',', 'it', "'s", 'fine', '...']
    """
    return EnglishWords().split(text)


def count_words(text: str) -> int:
    """``len(split_words(text))`` without building the list."""
    return EnglishWords().count(text)


def count_sentences(line: str) -> int:
    """:meth:`EnglishWords.count_sentences` of one line."""
    return EnglishWords().count_sentences(line)


def is_symbol_word(word: str) -> bool:
    """True when every character is in DataTrove's punctuation set."""
    punct = punctuation_set()
    return all(ch in punct for ch in word)


def has_alpha(word: str) -> bool:
    """True when some character is alphabetic."""
    return _has_alpha(word)
