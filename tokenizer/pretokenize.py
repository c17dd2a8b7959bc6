"""Pre-tokenization rules and reserved special tokens.

Everything here is expressed with `tokenizers`' own pre-tokenizers (``Split`` with
an Oniguruma regex, ``Sequence``, ``ByteLevel``), so a saved ``tokenizer.json``
runs without any Python at encode time, in `transformers`, vLLM or plain
`tokenizers`.

The pipeline (:func:`build_pre_tokenizer`) is three steps:

1. ``MAIN_PATTERN`` cuts text into words (one script class each: a Unicode
   script, or "CJK" for Han, Hiragana and Katakana together), whole ASCII digit
   runs, other numerals, punctuation runs and whitespace runs.
2. ``DIGIT_GROUPS_PATTERN`` cuts each digit run into place-aligned groups: first
   the leading group (1 to 3 digits, so that what remains is a multiple of three
   long), then plain triples.
3. ``ByteLevel`` maps bytes to the 256-symbol byte alphabet, so any text encodes.

Why a second split for digits: a single right-aligned pattern such as
``[0-9]{1,3}(?=(?:[0-9]{3})*(?![0-9]))`` re-scans the rest of the run at every
group, which is quadratic in the run's length (a 100,000-digit run takes seconds,
a megabyte of digits minutes). In step 2 the look-ahead alternative is anchored
at the start of a piece (``\\A``), so it runs once per piece and scans the run
once; the triples never look ahead. The whole digit path is linear
(``tests/tokenizer/test_pretokenize.py`` times a 1 MB run). ``TIKTOKEN_PATTERN``
is the same rules as one regex for `tiktoken`, which accepts only one (used by
:class:`tokenizer.FastEncoder` and the benchmark); its digit rule is linear too:
after a run's first group only whole triples remain, found by a one-character
look-behind, so only the first group looks ahead.

Decisions (see docs/tokenizer.md for the evidence):

* Han, Hiragana and Katakana are one script class, "CJK": a Japanese word mixes
  them (a kanji stem with hiragana endings, 食べる; 東京タワー), and a boundary at
  every change between them cost the Japanese text 10% of its compression (no
  token could span ``行|きます``). Every other script stays isolated, from the
  others and from CJK. The strict rule (the three apart) is kind
  ``trinity_strict``.

* Digits are ``[0-9]``, never ``\\d``: in Oniguruma ``\\d`` is every Unicode decimal
  digit, which would put fullwidth or Arabic-Indic digits in ASCII groups.
* Other numerals (``\\p{N}`` that is not ASCII: fullwidth ``１``, Arabic-Indic
  ``٣``, Extended Arabic-Indic ``۳`` (Persian), Devanagari ``३``, superscripts,
  fractions, Roman numeral signs, circled numbers) are one character per
  pre-token. They are rare (1,021 of 27.3M characters of the demo corpus:
  fullwidth digits in Chinese and Japanese text, Persian digits), BPE can
  learn each of them as one token (its 2-3 UTF-8 bytes merged), and a number
  written in them never glues to letters, ASCII digits or another numeral system.
  Place alignment is defined for ASCII runs only.
* A single ASCII space may attach to the first group of a digit run, exactly as a
  space attaches to the word after it: ``The price is 1234567!`` ->
  `` The`` `` price`` `` is`` `` 1`` ``234`` ``567`` ``!``. It saves a token per
  space-preceded number; the cost is 1,110 reserved tokens `` 0`` .. `` 999``
  (every digit string of 1 to 3 digits, with and without the space, is forced
  into the vocabulary; see :mod:`tokenizer.train`).
"""

from __future__ import annotations

from functools import lru_cache

# --------------------------------------------------------------------------
# Special tokens: fixed ids 0..15 whatever the vocabulary size, so a model
# config can hard-code them. The reserved slots leave room for new markers
# without changing any id.
SPECIAL_TOKENS: tuple[str, ...] = (
    "<|bos|>",  # 0: begin of document
    "<|eos|>",  # 1: end of document
    "<|pad|>",  # 2: padding (never trained on)
    "<|fim_prefix|>",  # 3: fill-in-the-middle, prefix-suffix-middle order
    "<|fim_middle|>",  # 4
    "<|fim_suffix|>",  # 5
    "<|fim_pad|>",  # 6
    "<|im_start|>",  # 7: chat turn start (ChatML style: <|im_start|>role\n...)
    "<|im_end|>",  # 8: chat turn end
    "<|tool_call|>",  # 9: model -> tool request
    "<|tool_result|>",  # 10: tool -> model reply
    *(f"<|reserved_{i}|>" for i in range(5)),  # 11..15
)
BOS, EOS, PAD = SPECIAL_TOKENS[0], SPECIAL_TOKENS[1], SPECIAL_TOKENS[2]
FIM_PREFIX, FIM_MIDDLE, FIM_SUFFIX, FIM_PAD = SPECIAL_TOKENS[3:7]
IM_START, IM_END = SPECIAL_TOKENS[7], SPECIAL_TOKENS[8]

# --------------------------------------------------------------------------
# Scripts. A word is letters of ONE script, so `東京`, `ภาษาไทย` and `ABC` in
# `ภาษาไทยABC` are separate pre-tokens. Cased scripts get the o200k camel-case
# split (`getHTTPResponse` -> `get`, `HTTPResponse`); uncased scripts are one
# run (Thai, Han and kana have no spaces, so a run is a phrase and BPE learns
# merges inside it).
CASED_SCRIPTS = ("Latin", "Cyrillic", "Greek", "Armenian", "Georgian")
UNCASED_SCRIPTS = (
    # Middle East and Africa
    "Arabic", "Hebrew", "Syriac", "Thaana", "NKo", "Ethiopic", "Tifinagh",
    # South Asia
    "Devanagari", "Bengali", "Gurmukhi", "Gujarati", "Oriya", "Tamil", "Telugu",
    "Kannada", "Malayalam", "Sinhala", "Tibetan",
    # South-east Asia
    "Thai", "Lao", "Myanmar", "Khmer", "Javanese", "Balinese", "Sundanese",
    # East Asia. Han, Hiragana and Katakana form the one class "CJK" by default
    # (東京に行く is one run, see `_cjk_word`); `trinity_strict` keeps them apart.
    "Han", "Hiragana", "Katakana", "Hangul", "Bopomofo", "Yi", "Mongolian",
    # Americas
    "Cherokee", "Canadian_Aboriginal",
)
# Characters that belong inside words of any script although they are not letters:
# combining marks (script Inherited, or the script's own vowel signs and viramas)
# and the zero-width (non-)joiners of Persian and Indic spelling.
_WORD_EXTRA = r"\p{M}" + "\u200c\u200d"  # literal characters: every regex engine reads them
# Characters of script Common whose Script_Extensions tie them to Han or to kana
# only: they are spelled inside those words, so they join the run of their script
# instead of splitting it (コーヒー is one word, 〆切 one Han run). Kana (scx
# {Hiragana, Katakana}): the prolonged sound mark ー (U+30FC) and its halfwidth
# form (U+FF70), the vertical kana repeat marks 〱〲〳〴〵 (U+3031-3035), the
# halfwidth voiced marks (U+FF9E-FF9F) and the spacing voiced marks ゛゜
# (U+309B-309C; symbols, so never the first character of a word). Han (scx {Han}):
# 〆 (U+3006). The masu mark 〼 (U+303C, scx {Han, Hiragana, Katakana}) joins any
# of the three. Nothing else is needed: 々 〻 are script Han, ゝゞ Hiragana, ヽヾ
# Katakana, the combining voiced marks U+3099-309A are marks (in every word), and
# ・ (U+30FB, scx shared with Hangul, Bopomofo and Yi) is punctuation, which
# attaches as a word's one leading character as in o200k.
_KANA_EXTRA = "\u30fc\uff70\u3031-\u3035\uff9e\uff9f\u309b\u309c\u303c"
_HAN_EXTRA = "\u3006\u303c"
_SCRIPT_EXTRA = {"Han": _HAN_EXTRA, "Hiragana": _KANA_EXTRA, "Katakana": _KANA_EXTRA}
_CONTRACTIONS = "(?:['\u2019](?i:s|t|re|ve|m|ll|d))?"  # English clitics, as o200k, plus ’


def _first(cls: str) -> str:
    # `cls` minus what may not start a word (ZWJ/ZWNJ, the Sk kana marks): the
    # first character of a word is a letter or a mark.
    return rf"[{cls}&&[\p{{L}}\p{{M}}]]"


def _cased_word(script: str, lookahead: bool = True) -> str:
    upper = rf"[[\p{{{script}}}&&[\p{{Lu}}\p{{Lt}}\p{{Lm}}\p{{Lo}}]]{_WORD_EXTRA}]"
    lower = rf"[[\p{{{script}}}&&[\p{{Ll}}\p{{Lm}}\p{{Lo}}]]{_WORD_EXTRA}]"
    # o200k's two word shapes: `Word`/`word` (upper* lower+) or `WORD`/`WORDWord` (upper+ lower*).
    if lookahead:
        return rf"{upper}*{lower}+|{upper}+{lower}*"
    # The same shapes restricted to a letter or mark first (what the look-ahead in
    # `_words` enforces), in the same order of preference: upper* lower+ is
    # `U0 upper* lower+` (at least one upper) or else `L0 lower*` (none).
    u0, l0 = _first(upper), _first(lower)
    return rf"{u0}{upper}*{lower}+|{l0}{lower}*|{u0}{upper}*{lower}*"


def _run(cls: str, lookahead: bool) -> str:
    return rf"{cls}+" if lookahead else rf"{_first(cls)}{cls}*"


def _uncased_word(script: str, lookahead: bool = True) -> str:
    extra = _WORD_EXTRA + _SCRIPT_EXTRA.get(script, "")
    return _run(rf"[[\p{{{script}}}&&\p{{L}}]{extra}]", lookahead)


_CJK_SCRIPTS = ("Han", "Hiragana", "Katakana")


def _cjk_word(lookahead: bool = True) -> str:
    # The default CJK class: Han, Hiragana and Katakana letters in one run
    # (東京に行きます, 食べる, 東京タワー are one piece each), with the Common-script
    # characters tied to any of them (ー, 〆, ...). Japanese words mix the three.
    return _run(rf"[[[\p{{Han}}\p{{Hiragana}}\p{{Katakana}}]&&\p{{L}}]{_WORD_EXTRA}{_KANA_EXTRA}{_HAN_EXTRA}]", lookahead)


def _other_letters(lookahead: bool = True) -> str:
    # Letters of any script not listed above (and script-Common letters) form runs
    # of their own: they never join a listed script, only each other.
    listed = "".join(rf"\p{{{s}}}" for s in CASED_SCRIPTS + UNCASED_SCRIPTS)
    return _run(rf"[[\p{{L}}&&[^{listed}]]{_WORD_EXTRA}]", lookahead)


def _words(lookahead: bool = True, join_cjk: bool = True) -> str:
    # A word may carry one leading character that is not a letter, digit or line
    # break: the space before it (` price`), or punctuation glued to it (`.append`,
    # `_decode`, `(self`). This is o200k's and Llama 3's choice and the main
    # compression win of byte-level BPE on prose and code alike.
    alts = [rf"(?:{_cased_word('Latin', lookahead)}){_CONTRACTIONS}"]
    alts += [_cased_word(s, lookahead) for s in CASED_SCRIPTS[1:]]
    for s in UNCASED_SCRIPTS:
        if join_cjk and s in _CJK_SCRIPTS:
            if s == "Han":
                alts.append(_cjk_word(lookahead))
            continue
        alts.append(_uncased_word(s, lookahead))
    alts.append(_other_letters(lookahead))
    if not lookahead:
        # tiktoken form: every alternative already starts with a letter or mark, so
        # the words part has no look-around and fancy-regex hands it whole to the
        # `regex` crate (about 15% faster there than with the look-ahead).
        return r"[^\r\n\p{L}\p{N}]?(?:" + "|".join(alts) + ")"
    # Oniguruma (the `tokenizers` path) tries alternatives one by one: the
    # look-ahead lets punctuation, digits and spaces fail once instead of once per
    # script (measured: ~10% faster pre-tokenization on the demo corpus).
    return r"[^\r\n\p{L}\p{N}]?(?=[\p{L}\p{M}])(?:" + "|".join(alts) + ")"


# ASCII digits: the whole run with at most one leading ASCII space; steps 2-3
# cut it into place-aligned groups. Never `\d` (see the module docstring).
_ASCII_DIGIT_RUN = r" ?[0-9]+"
# Non-ASCII numerals: one character per pre-token (decision in the docstring).
_OTHER_NUMERAL = r"[\p{N}&&[^0-9]]"
# Punctuation and symbol runs (`==`, `->`, `...`, emoji), with an optional leading
# space and trailing line breaks (o200k: keeps `{\n` and `;\n` as units in code).
_PUNCT = r" ?[^\s\p{L}\p{N}]+[\r\n/]*"
# Line-break runs with the indentation before them: blank lines in code and prose.
_NEWLINES = r"\s*[\r\n]+"
# A whitespace run minus its last character, which goes to the next word
# (`    def` -> `   `, ` def`): indentation runs stay whole for code.
_SPACES_BEFORE_WORD = r"\s+(?!\S)"
_SPACES = r"\s+"  # trailing whitespace at the end of the text

_REST = [_OTHER_NUMERAL, _PUNCT, _NEWLINES, _SPACES_BEFORE_WORD, _SPACES]
MAIN_PATTERN = "|".join([_words(), _ASCII_DIGIT_RUN, *_REST])
# Kind `trinity_strict`: MAIN_PATTERN with Han, Hiragana and Katakana each a script
# of its own (東京に行きます -> 東京 に 行 きます).
STRICT_PATTERN = "|".join([_words(join_cjk=False), _ASCII_DIGIT_RUN, *_REST])
# Step 2: the leading group of a digit piece (with its space), so that the rest
# is a multiple of 3 long, then plain triples. `\A` anchors the look-ahead at the
# start of the piece: one attempt per piece, one scan of the run, and at every
# later position it fails at once. `\z` is the piece's end; pieces with digits
# are digit runs only, so other pieces never match.
DIGIT_GROUPS_PATTERN = r"\A ?[0-9]{1,3}(?=(?:[0-9]{3})*\z)|[0-9]{3}"

# The same rules as ONE regex, for tiktoken (fancy-regex): `tokenizer.FastEncoder`
# and the benchmark. Digits: after a digit, the rest of the run is a multiple of
# three long (the first group made it so, and nothing else consumes digits), so a
# plain triple follows, found by a one-character look-behind; only the first group
# of a run looks ahead, over the run once. Linear, like the two-step pipeline (a
# look-ahead at every group would re-scan the run: quadratic). The look-ahead body
# has no look-around (`(?:[^0-9]|\z)` rather than `(?![0-9])`), so the `regex` crate
# runs it without backtracking. Words: `_words(lookahead=False)`, the same
# matches without look-around. Tested equal to the pipeline on the rule tables and
# on random strings (tests/tokenizer/test_pretokenize.py).
_TIKTOKEN_DIGITS = r"(?<=[0-9])[0-9]{3}| ?[0-9]{1,3}(?=(?:[0-9]{3})*(?:[^0-9]|\z))"
TIKTOKEN_PATTERN = "|".join([_words(lookahead=False), _TIKTOKEN_DIGITS, *_REST])
TIKTOKEN_STRICT_PATTERN = "|".join([_words(lookahead=False, join_cjk=False), _TIKTOKEN_DIGITS, *_REST])

# The GPT-4o (o200k_base) split pattern, the baseline we compare against: the same
# training data and trainer, only this regex (digits `\p{N}{1,3}` from the left,
# no script isolation) and no forced digit tokens.
GPT4O_PATTERN = "|".join(
    [
        r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
        r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
        r"\p{N}{1,3}",
        r" ?[^\s\p{L}\p{N}]+[\r\n/]*",
        r"\s*[\r\n]+",
        r"\s+(?!\S)",
        r"\s+",
    ]
)

#: Pre-tokenizer kinds: ``trinity`` (ours: place-aligned digits, script isolation
#: with Han+Hiragana+Katakana one class "CJK"), ``trinity_strict`` (the same with
#: Han, Hiragana and Katakana apart) and ``gpt4o`` (the o200k regex, the baseline).
PRETOKENIZERS = ("trinity", "trinity_strict", "gpt4o")


def uses_digit_groups(kind: str) -> bool:
    """Whether ``kind`` has the place-aligned digit rule (and the forced digit tokens)."""
    return kind != "gpt4o"


def main_pattern(kind: str = "trinity") -> str:
    """Step 1 regex of ``kind``."""
    if kind not in PRETOKENIZERS:
        from common.errors import ConfigError

        raise ConfigError(f"unknown pre-tokenizer {kind!r}; expected one of {PRETOKENIZERS}")
    return {"trinity": MAIN_PATTERN, "trinity_strict": STRICT_PATTERN, "gpt4o": GPT4O_PATTERN}[kind]


def tiktoken_pattern(kind: str = "trinity") -> str:
    """The one-regex form of ``kind`` for tiktoken (``gpt4o``: the o200k regex itself)."""
    main_pattern(kind)  # validates the kind
    return {"trinity": TIKTOKEN_PATTERN, "trinity_strict": TIKTOKEN_STRICT_PATTERN, "gpt4o": GPT4O_PATTERN}[kind]


def kind_of(tok) -> str:
    """Which kind of :data:`PRETOKENIZERS` a `tokenizers` Tokenizer's pre-tokenizer is.

    Read from the saved regex, so a ``tokenizer.json`` trained with either CJK rule
    gets the matching tiktoken twin. Raises ``ConfigError`` for a pre-tokenizer that
    is none of them.
    """
    import json

    state = tok.pre_tokenizer.__getstate__() if tok.pre_tokenizer is not None else b"null"
    blob = json.dumps(json.loads(state))
    for kind in PRETOKENIZERS:
        if json.dumps(main_pattern(kind))[1:-1] in blob:
            return kind
    from common.errors import ConfigError

    raise ConfigError("the tokenizer's pre-tokenizer is none of " + ", ".join(PRETOKENIZERS))


def forced_digit_strings(space_prefix: bool = True) -> list[str]:
    """Every pre-token the digit rules can produce: ``0``..``999`` with leading zeros
    (``00``, ``007``), and each of them after one space when ``space_prefix``.

    Ordered so that each string's prefix comes before it (merge order).
    """
    out: list[str] = []
    for width in (1, 2, 3):
        out += [str(i).zfill(width) for i in range(10**width)]
    if space_prefix:
        out += [" " + s for s in out]
    return out


@lru_cache(maxsize=None)
def _pattern_regex(pattern: str):
    from tokenizers import Regex

    return Regex(pattern)


def build_pre_tokenizer(kind: str = "trinity"):
    """The `tokenizers` pre-tokenizer for ``kind`` (one of :data:`PRETOKENIZERS`).

    >>> pt = build_pre_tokenizer()
    >>> [p for p, _ in pt.pre_tokenize_str("The price is 1234567!")]
    ['The', 'Ġprice', 'Ġis', 'Ġ1', '234', '567', '!']
    """
    from tokenizers import pre_tokenizers as pre

    steps = [pre.Split(_pattern_regex(main_pattern(kind)), "isolated")]
    if uses_digit_groups(kind):
        steps.append(pre.Split(_pattern_regex(DIGIT_GROUPS_PATTERN), "isolated"))
    steps.append(pre.ByteLevel(add_prefix_space=False, use_regex=False, trim_offsets=False))
    return pre.Sequence(steps)


def split_text(text: str, kind: str = "trinity") -> list[str]:
    """Pre-tokens of ``text`` as plain strings (before the byte mapping); for tests
    and for reading the rules.

    >>> split_text("東京2024年 ภาษาไทยABC")
    ['東京', '2', '024', '年', ' ภาษาไทย', 'ABC']
    """
    from tokenizers import pre_tokenizers as pre

    steps = [pre.Split(_pattern_regex(main_pattern(kind)), "isolated")]
    if uses_digit_groups(kind):
        steps.append(pre.Split(_pattern_regex(DIGIT_GROUPS_PATTERN), "isolated"))
    return [p for p, _ in pre.Sequence(steps).pre_tokenize_str(text)]
