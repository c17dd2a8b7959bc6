"""Pre-tokenization rules and reserved special tokens.

Everything here is expressed with `tokenizers`' own pre-tokenizers (``Split`` with
an Oniguruma regex, ``Sequence``, ``ByteLevel``), so a saved ``tokenizer.json``
runs without any Python at encode time, in `transformers`, vLLM or plain
`tokenizers`.

The pipeline (:func:`build_pre_tokenizer`) is three steps:

1. ``MAIN_PATTERN`` cuts text into words (one Unicode script each), whole ASCII
   digit runs, other numerals, punctuation runs and whitespace runs.
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
(``tests/tokenizer/test_pretokenize.py`` times a 1 MB run). ``TIKTOKEN_PATTERN`` is the same rules as one regex for `tiktoken`, which
accepts only one; it is used by the benchmark, where runs are short.

Decisions (see docs/tokenizer.md for the evidence):

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
    # East Asia (Han, Hiragana and Katakana apart: 東京に行く -> 東京 に 行 く)
    "Han", "Hiragana", "Katakana", "Hangul", "Bopomofo", "Yi", "Mongolian",
    # Americas
    "Cherokee", "Canadian_Aboriginal",
)
# Characters that belong inside words of any script although they are not letters:
# combining marks (script Inherited, or the script's own vowel signs and viramas)
# and the zero-width (non-)joiners of Persian and Indic spelling.
_WORD_EXTRA = r"\p{M}" + "\u200c\u200d"  # literal characters: every regex engine reads them
# Katakana-Hiragana prolonged sound mark (ー, U+30FC, and its halfwidth form) is
# script Common but spelled inside kana words: コーヒー is one word.
_KANA_EXTRA = "\u30fc\uff70"
_CONTRACTIONS = "(?:['\u2019](?i:s|t|re|ve|m|ll|d))?"  # English clitics, as o200k, plus ’


def _cased_word(script: str) -> str:
    upper = rf"[[\p{{{script}}}&&[\p{{Lu}}\p{{Lt}}\p{{Lm}}\p{{Lo}}]]{_WORD_EXTRA}]"
    lower = rf"[[\p{{{script}}}&&[\p{{Ll}}\p{{Lm}}\p{{Lo}}]]{_WORD_EXTRA}]"
    # o200k's two word shapes: `Word`/`word` (upper* lower+) or `WORD`/`WORDWord` (upper+ lower*).
    return rf"{upper}*{lower}+|{upper}+{lower}*"


def _uncased_word(script: str) -> str:
    extra = _WORD_EXTRA + (_KANA_EXTRA if script in ("Hiragana", "Katakana") else "")
    return rf"[[\p{{{script}}}&&\p{{L}}]{extra}]+"


def _other_letters() -> str:
    # Letters of any script not listed above (and script-Common letters) form runs
    # of their own: they never join a listed script, only each other.
    listed = "".join(rf"\p{{{s}}}" for s in CASED_SCRIPTS + UNCASED_SCRIPTS)
    return rf"[[\p{{L}}&&[^{listed}]]{_WORD_EXTRA}]+"


def _words() -> str:
    # A word may carry one leading character that is not a letter, digit or line
    # break: the space before it (` price`), or punctuation glued to it (`.append`,
    # `_decode`, `(self`). This is o200k's and Llama 3's choice and the main
    # compression win of byte-level BPE on prose and code alike.
    alts = [rf"(?:{_cased_word('Latin')}){_CONTRACTIONS}"]
    alts += [_cased_word(s) for s in CASED_SCRIPTS[1:]]
    alts += [_uncased_word(s) for s in UNCASED_SCRIPTS]
    alts.append(_other_letters())
    # The look-ahead lets punctuation, digits and spaces fail once instead of once
    # per script (measured: ~10% faster pre-tokenization on the demo corpus).
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

MAIN_PATTERN = "|".join(
    [_words(), _ASCII_DIGIT_RUN, _OTHER_NUMERAL, _PUNCT, _NEWLINES, _SPACES_BEFORE_WORD, _SPACES]
)
# Step 2: the leading group of a digit piece (with its space), so that the rest
# is a multiple of 3 long, then plain triples. `\A` anchors the look-ahead at the
# start of the piece: one attempt per piece, one scan of the run, and at every
# later position it fails at once. `\z` is the piece's end; pieces with digits
# are digit runs only, so other pieces never match.
DIGIT_GROUPS_PATTERN = r"\A ?[0-9]{1,3}(?=(?:[0-9]{3})*\z)|[0-9]{3}"

# The same rules as ONE regex, for tiktoken (fancy-regex) in the benchmark. The
# look-ahead is quadratic in a run's length: fine for benchmark text, not for
# adversarial input, which is why the `tokenizers` pipeline does not use it.
TIKTOKEN_PATTERN = MAIN_PATTERN.replace(
    _ASCII_DIGIT_RUN, r" ?[0-9]{1,3}(?=(?:[0-9]{3})*(?![0-9]))", 1
)

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

PRETOKENIZERS = ("trinity", "gpt4o")


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
    """The `tokenizers` pre-tokenizer for ``kind`` (``trinity`` or ``gpt4o``).

    >>> pt = build_pre_tokenizer()
    >>> [p for p, _ in pt.pre_tokenize_str("The price is 1234567!")]
    ['The', 'Ġprice', 'Ġis', 'Ġ1', '234', '567', '!']
    """
    from tokenizers import pre_tokenizers as pre

    byte_level = pre.ByteLevel(add_prefix_space=False, use_regex=False, trim_offsets=False)
    if kind == "gpt4o":
        return pre.Sequence([pre.Split(_pattern_regex(GPT4O_PATTERN), "isolated"), byte_level])
    if kind != "trinity":
        from rsdb.errors import ConfigError

        raise ConfigError(f"unknown pre-tokenizer {kind!r}; expected one of {PRETOKENIZERS}")
    return pre.Sequence(
        [
            pre.Split(_pattern_regex(MAIN_PATTERN), "isolated"),
            pre.Split(_pattern_regex(DIGIT_GROUPS_PATTERN), "isolated"),
            byte_level,
        ]
    )


def split_text(text: str, kind: str = "trinity") -> list[str]:
    """Pre-tokens of ``text`` as plain strings (before the byte mapping); for tests
    and for reading the rules.

    >>> split_text("東京2024年 ภาษาไทยABC")
    ['東京', '2', '024', '年', ' ภาษาไทย', 'ABC']
    """
    from tokenizers import pre_tokenizers as pre

    steps = [pre.Split(_pattern_regex(GPT4O_PATTERN if kind == "gpt4o" else MAIN_PATTERN), "isolated")]
    if kind == "trinity":
        steps.append(pre.Split(_pattern_regex(DIGIT_GROUPS_PATTERN), "isolated"))
    return [p for p, _ in pre.Sequence(steps).pre_tokenize_str(text)]
