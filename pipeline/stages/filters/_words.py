"""Word splitters per language: the ones DataTrove assigns, so FineWeb-2's thresholds mean what they meant.

A threshold such as "mean word length 1 to 5" (Chinese) only makes sense with the
splitter it was tuned on. FineWeb 2 ran DataTrove's filters with ``language=<lang_script>``,
which picks a word tokenizer from ``tokenizer_assignment.csv``; ``fineweb2_rules.json``
records that choice per language and this module reproduces each kind with the same
library and settings:

* ``en``: the pure-Python re-implementation of ``spacy.blank("en")`` in ``_text.py`` (fast).
* ``spacy``: ``spacy.blank(code)``; Chinese with the jieba segmenter, Vietnamese with pyvi
  (spaCy's own ``vi`` default), exactly DataTrove's ``SpaCyTokenizer``.
* ``sudachi``: SudachiPy, core dictionary, split mode A (spaCy's ``ja`` with DataTrove's
  leak fix); text cut into 40,000-byte pieces as DataTrove does.
* ``kiwi``: kiwipiepy (Korean). FineWeb 2 used the ``sbg`` model, which kiwipiepy 0.22+
  no longer ships; we use the default ``cong`` model (see docs/curation.md for the agreement).
* ``indicnlp``: Indic NLP Library's ``trivial_tokenize`` (Hindi).
* ``pythainlp``: PyThaiNLP ``newmm-safe`` (Thai).

Every splitter drops whitespace tokens and strips the rest (DataTrove's ``strip_strings``).
Each splitter :func:`splitter` returns owns its model and its chunk cache (loaded on the
first call, never in a module global), so they live and die with the stage holding the
splitter (``_doc.DocCaches``); a missing package raises a ``ConfigError`` with the pip
command when the stage is built, not mid-run.
"""

from __future__ import annotations

import re
from typing import Any, Callable

import numpy as np

from pipeline.errors import ConfigError
from pipeline.stages.filters._text import EnglishWords

Splitter = Callable[[str], list[str]]

#: kind -> (import name, pip package) the splitter needs
REQUIRES: dict[str, tuple[tuple[str, str], ...]] = {
    "en": (),
    "spacy": (("spacy", "spacy"),),
    "sudachi": (("sudachipy", "sudachipy"), ("sudachidict_core", "sudachidict-core")),
    "kiwi": (("kiwipiepy", "kiwipiepy"),),
    "indicnlp": (("indicnlp", "indic-nlp-library"),),
    "pythainlp": (("pythainlp", "pythainlp"),),
}
_EXTRA = {"zh": (("jieba", "jieba"),), "vi": (("pyvi", "pyvi"),)}


def check_available(kind: str, code: str) -> None:
    """Raise ConfigError naming the pip package when a splitter's library is missing."""
    import importlib.util

    if kind not in REQUIRES:
        raise ConfigError(f"unknown word splitter {kind!r} (known: {', '.join(REQUIRES)})")
    needs = REQUIRES[kind] + (_EXTRA.get(code, ()) if kind == "spacy" else ())
    missing = [pkg for mod, pkg in needs if importlib.util.find_spec(mod) is None]
    if missing:
        raise ConfigError(f"the {code!r} word splitter ({kind}) needs: pip install {' '.join(missing)}"
                          " (or the 'multilingual' extra; or leave the language out with `languages:`)")


def _strip(tokens) -> list[str]:
    return [s for s in (t.strip() for t in tokens) if s]


def _spacy(code: str):
    import spacy

    config = {"nlp": {"tokenizer": {"segmenter": "jieba"}}} if code == "zh" else None
    nlp = spacy.blank(code, config=config) if config else spacy.blank(code)
    # Only token texts are read, and no tokenizer rule looks at lexeme attributes (shape,
    # like_url, norm...): without their getters a new lexeme costs a fraction (they were
    # most of the splitting time). Same tokens, checked on every demo document.
    nlp.vocab.lex_attr_getters = {}
    return nlp


#: segmenters that look across spaces (jieba; pyvi joins syllables into words): whole text at once
_WHOLE_TEXT = {"zh", "vi"}
_CHUNK_CACHE_MAX = 1 << 18  # whitespace chunks per language; emptied when full


class _Lazy:
    """A model built on first use by ``load`` and kept by this object (one per splitter)."""

    def __init__(self, load: Callable[[], Any]):
        self._load = load
        self._model: Any = None

    def __call__(self) -> Any:
        if self._model is None:
            self._model = self._load()
        return self._model


def _spacy_words(code: str) -> Splitter:
    from spacy.attrs import IDX, LENGTH

    model = _Lazy(lambda: _spacy(code))
    if code in _WHOLE_TEXT:
        def split_whole(text: str) -> list[str]:
            nlp = model()
            nlp.max_length = len(text) + 10
            with nlp.memory_zone():
                return _strip(t.text for t in nlp.make_doc(text))
        return split_whole

    cache: dict[str, tuple[str, ...]] = {}

    def split(text: str) -> list[str]:
        # spaCy's rule tokenizer splits each whitespace chunk on its own, so a chunk's tokens
        # are cached and only chunks not seen before are tokenized, in one call (joined by
        # newlines, then regrouped by offset). Documents repeat most of their chunks.
        chunks = text.split()
        new = [c for c in dict.fromkeys(chunks) if c not in cache]
        if new:
            if len(cache) + len(new) > _CHUNK_CACHE_MAX:
                cache.clear()
            nlp = model()
            joined = "\n".join(new)
            nlp.max_length = len(joined) + 10
            starts = [0]
            for c in new[:-1]:
                starts.append(starts[-1] + len(c) + 1)
            with nlp.memory_zone():
                # Offsets and lengths as one array: no Token object per token.
                offsets = nlp.make_doc(joined).to_array([IDX, LENGTH]).reshape(-1, 2)
            owner = np.searchsorted(np.asarray(starts), offsets[:, 0], side="right") - 1
            got: list[list[str]] = [[] for _ in new]
            for k, i, n in zip(owner.tolist(), offsets[:, 0].tolist(), offsets[:, 1].tolist()):
                tok = joined[i:i + n].strip()
                if tok:
                    got[k].append(tok)
            for c, toks in zip(new, got):
                cache[c] = tuple(toks)
        return [t for c in chunks for t in cache[c]]
    return split


def _sudachi():
    from sudachipy import Dictionary, SplitMode

    return Dictionary(dict="core").create(mode=SplitMode.A)


def _byte_chunks(text: str, limit: int = 40_000) -> list[str]:
    """Pieces of at most ``limit`` UTF-8 bytes (Sudachi refuses longer input)."""
    if len(text.encode("utf-8")) <= limit:
        return [text]
    out, start = [], 0
    while start < len(text):
        end = min(len(text), start + limit // 4)  # 4 bytes per character at most
        while end < len(text) and len(text[start:end + 256].encode("utf-8")) <= limit:
            end += 256
        out.append(text[start:end])
        start = end
    return out


def _sudachi_words() -> Splitter:
    model = _Lazy(_sudachi)

    def split(text: str) -> list[str]:
        tok = model()
        return _strip(m.surface() for piece in _byte_chunks(text) for m in tok.tokenize(piece))
    return split


def _kiwi():
    from kiwipiepy import Kiwi

    return Kiwi()


_LONG_NUMBER = re.compile("[0-9,]{20,}")  # DataTrove: kiwipiepy mishandles very long numbers


def _kiwi_words() -> Splitter:
    model = _Lazy(_kiwi)

    def split(text: str) -> list[str]:
        # DataTrove slices the original text with offsets from the cleaned one; so do we.
        return _strip(text[t.start:t.end] for t in model().tokenize(_LONG_NUMBER.sub("", text)))
    return split


def _indic_words(code: str) -> Splitter:
    def split(text: str) -> list[str]:
        from indicnlp.tokenize.indic_tokenize import trivial_tokenize

        return _strip(trivial_tokenize(text, code))
    return split


def _thai_words(text: str) -> list[str]:
    from pythainlp.tokenize import word_tokenize

    return _strip(word_tokenize(text, keep_whitespace=False, engine="newmm-safe"))


def splitter(kind: str, code: str) -> Splitter:
    """A new word splitter of one kind for one language code (checked with :func:`check_available`),
    owning its model (loaded on the first call) and caches."""
    check_available(kind, code)
    if kind == "en":
        return EnglishWords().split  # its chunk caches belong to the returned splitter
    if kind == "spacy":
        return _spacy_words(code)
    if kind == "sudachi":
        return _sudachi_words()
    if kind == "kiwi":
        return _kiwi_words()
    if kind == "indicnlp":
        return _indic_words(code)
    return _thai_words
