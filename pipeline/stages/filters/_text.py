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
from typing import Any

@lru_cache(1)
def _classes() -> dict[str, str]:
    """Character classes by Unicode category (lowercase, uppercase, uncased letters, other symbols)."""
    lower, upper, uncased, icons = [], [], [], []
    for c in range(0x20, 0x30000):
        ch = chr(c)
        cat = unicodedata.category(ch)
        if cat == "Ll":
            lower.append(ch)
        elif cat == "Lu":
            upper.append(ch)
        elif cat in ("Lo", "Lm"):
            uncased.append(ch)
        elif cat == "So" and ch != "°":
            icons.append(ch)
    return {"lower": _ranges(lower + uncased), "upper": _ranges(upper + uncased), "icons": _ranges(icons)}


def _ranges(chars: list[str]) -> str:
    """A regex class body of ``a-z`` style ranges (compiles to a compact charset)."""
    points = sorted({ord(c) for c in chars})
    parts: list[str] = []
    i = 0
    while i < len(points):
        j = i
        while j + 1 < len(points) and points[j + 1] == points[j] + 1:
            j += 1
        lo, hi = chr(points[i]), chr(points[j])
        parts.append(re.escape(lo) if i == j else f"{re.escape(lo)}-{re.escape(hi)}")
        i = j + 1
    return "".join(parts)


# Token classes of a blank English spaCy tokenizer, restated: punctuation, quotes, hyphens,
# currency signs and units (split off after digits).
_PUNCT = "… …… , : ; ! ? ¿ ؟ ¡ ( ) [ ] { } < > _ # * & 。 ？ ！ ， 、 ； ： ～ · । ، ۔ ؛ ٪".split()
_QUOTES = "' \" ” “ ` ‘ ´ ’ ‚ , „ » « 「 」 『 』 （ ） 〔 〕 【 】 《 》 〈 〉 ⟦ ⟧".split()
_HYPHENS = "- – — -- --- —— ~".split()
_CURRENCY = "$ £ € ¥ ฿ US$ C$ A$ ₽ ﷼ ₴ ₠ ₡ ₢ ₣ ₤ ₥ ₦ ₧ ₨ ₩ ₪ ₫ ₭ ₮ ₯ ₰ ₱ ₲ ₳ ₵ ₶ ₷ ₸ ₹ ₺ ₻ ₼ ₾ ₿".split()
_UNITS = ("km km² km³ m m² m³ dm dm² dm³ cm cm² cm³ mm mm² mm³ ha µm nm yd in ft kg g mg µg t lb oz m/s km/h "
          "kmh mph hPa Pa mbar mb MB kb KB gb GB tb TB T G M K %").split()


def _alt(items: list[str]) -> str:
    return "|".join(re.escape(x) for x in sorted(set(items), key=len, reverse=True))


@lru_cache(1)
def _rules() -> tuple[Any, Any, Any, Any]:
    c = _classes()
    icons = f"[{c['icons']}]"
    quotes = "".join(re.escape(q) for q in _QUOTES)
    punct = "".join(re.escape(p) for p in _PUNCT)
    prefix = re.compile("^(?:" + "|".join([
        "§", "%", "=", "—", "–", r"\+(?![0-9])", _alt(_PUNCT), r"\.\.+", "…", _alt(_QUOTES), _alt(_CURRENCY), icons,
    ]) + ")")
    suffix = re.compile("(?:" + "|".join([
        _alt(_PUNCT), r"\.\.+", "…", _alt(_QUOTES), icons, "'s", "'S", "’s", "’S", "—", "–",
        r"(?<=[0-9])\+", r"(?<=°[FfCcKk])\.", rf"(?<=[0-9])(?:{_alt(_CURRENCY)})", rf"(?<=[0-9])(?:{_alt(_UNITS)})",
        rf"(?<=[0-9{c['lower']}%²\-\+{punct}{quotes}])\.", rf"(?<=[{c['upper']}][{c['upper']}])\.",
    ]) + ")$")
    alpha = r"[^\W\d_]"
    infix = re.compile("|".join([
        r"\.\.+", "…", icons, r"(?<=[0-9])[+\-\*^](?=[0-9-])",
        rf"(?<=[{c['lower']}{quotes}])\.(?=[{c['upper']}{quotes}])", rf"(?<={alpha}),(?={alpha})",
        rf"(?<=[^\W_])(?:{_alt(_HYPHENS)})(?={alpha})", rf"(?<=[^\W_])[:<>=/](?={alpha})",
    ]))
    # Host names and URLs stay whole. Written without nested ambiguity so it runs in linear time.
    url = re.compile(
        r"^(?:[\w+\-.]{2,}://)?(?:[a-z0-9\u00a1-\uffff][a-z0-9\u00a1-\uffff_-]{0,62}\.)+"
        r"[a-z\u00a1-\uffff]{2,63}\.?(?::\d{2,5})?(?:[/?#]\S*)?$")
    return prefix, suffix, infix, url


# Whole-token exceptions: abbreviations kept with their period, emoticons, and splits of
# common contractions (a subset of what the English tokenizer lists).
_KEEP = frozenset(
    [f"{x}." for x in "abcdefghijklmnopqrstuvwxyz"]
    + "Mr. Mrs. Ms. Dr. St. vs. e.g. i.e. E.g. I.e. a.m. p.m. Jan. Feb. Mar. Apr. Jun. Jul. Aug. Sep. Sept. "
      "Oct. Nov. Dec. Inc. Ltd. Co. Corp. Jr. Sr. Mt. Ph.D. Adm. Gen. Gov. Rep. Sen. Rev. Ave. Bros. "
      "'' -- ... :) :( ): (: :-) :-( ;) ;-) :P :p :D =) (= :] [: :[ :/ :3 <3 :* :| =/ :-| ^_^ -_- "
      ":o :O :0 o.O O.o o.o 0.0 :'( :') =D ;p ;D 8) 8-) :-P :-D :-/ :-* :-] :-[ <33 </3 xD XD xd C++ and/or".split()
)
_SPLIT = {"cannot": ["can", "not"], "Cannot": ["Can", "not"], "gonna": ["gon", "na"], "gotta": ["got", "ta"],
          "wanna": ["wan", "na"], "lemme": ["lem", "me"], "im": ["i", "m"], "Im": ["I", "m"], "id": ["i", "d"],
          "Id": ["I", "d"], "ive": ["i", "ve"], "Ive": ["I", "ve"]}
# Apostrophe-less negations ("dont" -> "do" + "nt"), for the usual auxiliaries.
for _aux in "do does did ca wo is are was were has have had could should would must need might ai".split():
    for _form in (_aux, _aux.title()):
        _SPLIT[_form + "nt"] = [_form, "nt"]
_CONTRACTION = re.compile(r"^([^\W\d_]+)(n['’]t|['’](?:re|ve|ll|d|m|RE|VE|LL|D|M))$")


def _special(s: str) -> list[str] | None:
    if s in _KEEP:
        return [s]
    if s in _SPLIT:
        return _SPLIT[s]
    m = _CONTRACTION.match(s)
    if m and len(m.group(1)) > 0:
        return [m.group(1), m.group(2)]
    return None


def _peel(chunk: str, out: list[str]) -> None:
    """Split one non-trivial whitespace chunk: prefixes and suffixes off, special cases, then infixes."""
    prefix_re, suffix_re, infix_re, url_re = _rules()
    prefixes: list[str] = []
    suffixes: list[str] = []
    s = chunk
    special = _special(s)
    last = -1
    while s and special is None and len(s) != last:
        last = len(s)
        m = prefix_re.search(s)
        pre = m.end() if m else 0
        if pre:
            rest = s[pre:]
            if rest and (sp := _special(rest)) is not None:
                prefixes.append(s[:pre])
                s, special = rest, sp
                break
        suf = _suffix_len(suffix_re, s, pre)
        if suf:
            rest = s[:-suf]
            if rest and (sp := _special(rest)) is not None:
                suffixes.append(s[-suf:])
                s, special = rest, sp
                break
        if pre and suf and pre + suf <= len(s):
            prefixes.append(s[:pre])
            suffixes.append(s[-suf:])
            s = s[pre:-suf]
        elif pre:
            prefixes.append(s[:pre])
            s = s[pre:]
        elif suf:
            suffixes.append(s[-suf:])
            s = s[:-suf]
        if s and (sp := _special(s)) is not None:
            special = sp
            break
    out.extend(prefixes)
    if special is not None:
        out.extend(special)
    elif s:
        if s.isalnum() or ("." in s and url_re.match(s)):
            out.append(s)
        else:
            start = 0
            for m in infix_re.finditer(s):
                if m.start() == 0:
                    continue
                if m.start() > start:
                    out.append(s[start : m.start()])
                if m.end() > m.start():
                    out.append(m.group())
                start = m.end()
            if start < len(s):
                out.append(s[start:])
    out.extend(reversed(suffixes))


_PUNCT_SET = frozenset(x for x in _PUNCT if len(x) == 1)
_QUOTE_SET = frozenset(x for x in _QUOTES if len(x) == 1)
_AFTER_DIGIT_SET = frozenset(_UNITS + _CURRENCY)
_AFTER_DIGIT_SIZES = sorted({len(u) for u in _AFTER_DIGIT_SET}, reverse=True)


def _lowerish(ch: str) -> bool:
    return ch.islower() or (ch.isalpha() and not ch.isupper())


def _upperish(ch: str) -> bool:
    return ch.isupper() or (ch.isalpha() and not ch.islower())


def _suffix_len(suffix_re: Any, s: str, pre: int) -> int:
    """Length of the suffix token ending ``s[pre:]`` (0 if none), checked from the last characters.

    Same result as searching the suffix rules (leftmost, i.e. longest, match) but without scanning.
    """
    body = s[pre:]
    n = len(body)
    if not n:
        return 0
    last = body[-1]
    best = 0
    if last == "." and n >= 2 and body[-2] == ".":
        k = n - 1
        while k > 0 and body[k - 1] == ".":
            k -= 1
        best = n - k
    elif last == "…":
        best = 2 if body.endswith("……") and n > 2 else 1
    elif last in _PUNCT_SET or last in _QUOTE_SET or last in "—–" or (
            last != "°" and unicodedata.category(last) == "So"):
        best = 1
    if body.endswith(("'s", "'S", "’s", "’S")) and n > 2:
        best = max(best, 2)
    if last == "." and n >= 2:
        p = body[-2]
        if p in "0123456789%²-+" or p in _PUNCT_SET or p in _QUOTE_SET or _lowerish(p):
            best = max(best, 1)
        elif n >= 3 and _upperish(p) and _upperish(body[-3]):
            best = max(best, 1)
        elif n >= 3 and body[-3] == "°" and p in "FfCcKk":
            best = max(best, 1)
    if last == "+" and n >= 2 and body[-2].isdigit():
        best = max(best, 1)
    for size in _AFTER_DIGIT_SIZES:
        if size < n and body[-size - 1] in "0123456789" and body[-size:] in _AFTER_DIGIT_SET:
            best = max(best, size)
            break
    return best if best < n else 0


_MERGE_MAX = 3


def _merge_specials(tokens: list[str], start: int) -> None:
    """Join neighbouring tokens of one chunk that together spell a special case (``p`` ``.`` -> ``p.``)."""
    i = start
    while i < len(tokens) - 1:
        for n in range(min(_MERGE_MAX, len(tokens) - i), 1, -1):
            joined = "".join(tokens[i : i + n])
            if joined in _KEEP:
                tokens[i : i + n] = [joined]
                break
        i += 1


_EASY_END = frozenset(",;:!?)]}.\"")


def split_words(text: str) -> list[str]:
    """Word tokens of ``text`` (punctuation tokens included, whitespace dropped).

    >>> split_words("Don't panic, it's fine...")
    ['Do', "n't", 'panic', ',', 'it', "'s", 'fine', '...']
    """
    out: list[str] = []
    for chunk in text.split():
        if chunk.isalnum():
            if chunk in _SPLIT:
                out.extend(_SPLIT[chunk])
            else:
                out.append(chunk)
        elif len(chunk) > 2 and chunk[-1] in _EASY_END and chunk[:-1].isalnum() and (
                chunk[-1] != "." or (chunk not in _KEEP and (chunk[-2].islower() or chunk[-2].isdigit()))):
            # The common "word," / "word." case: one suffix token, no special case involved.
            word = chunk[:-1]
            if word in _SPLIT:
                out.extend(_SPLIT[word])
            else:
                out.append(word)
            out.append(chunk[-1])
        else:
            start = len(out)
            _peel(chunk, out)
            if len(out) - start > 1:
                _merge_specials(out, start)
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
