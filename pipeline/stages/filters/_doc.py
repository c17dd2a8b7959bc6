"""One document's shared features (words, word counts), and the caches a stage keeps for them.

Every rule set of a stage reads the same :class:`Doc`, so a document is split into words
once however many rule sets look at its words.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Callable

from pipeline.stages.filters._ngrams import HashPowers
from pipeline.stages.filters._text import EnglishWords

Splitter = Callable[[str], list[str]]


class DocCaches:
    """The bounded caches one stage keeps across documents: the English word splitter's
    chunk tables, the n-gram hash powers and the other languages' word splitters (each with
    its model and chunk cache, one per configured language: bounded by the config). Built
    per stage (and per worker: pickling a stage drops them), never shared through module
    globals.

    Args:
        max_entries: the bound of each word-cache table (see :class:`EnglishWords`).
        max_hash_positions: the bound of the hash-power tables (see :class:`HashPowers`).
    """

    def __init__(self, max_entries: int = 1 << 19, max_hash_positions: int = 1 << 20):
        self.words = EnglishWords(max_entries)
        self.powers = HashPowers(max_hash_positions)
        self.splitters: dict[tuple[str, str], Splitter] = {}

    def splitter(self, kind: str, code: str) -> Splitter:
        """The word splitter of ``kind`` for language ``code``, made on first use (see ``_words.py``)."""
        fn = self.splitters.get((kind, code))
        if fn is None:
            from pipeline.stages.filters._words import splitter

            fn = self.splitters[(kind, code)] = splitter(kind, code)
        return fn

    def clear(self) -> None:
        """Forget everything cached (benchmarks time a cold start with this)."""
        self.words.clear()
        self.powers = HashPowers(self.powers.max_positions)
        self.splitters.clear()


class CachedStage:
    """Mixin of the filters that keep :class:`DocCaches`: built on first use where the stage
    runs, dropped when the stage is pickled (a Ray worker builds its own), bounded."""

    _caches: DocCaches | None = None

    @property
    def caches(self) -> DocCaches:
        """This stage's word, hash and splitter caches (built on first use, in the worker)."""
        if self._caches is None:
            self._caches = DocCaches()
        return self._caches

    def clear_caches(self) -> None:
        """Forget every cached word, hash table and splitter."""
        self._caches = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_caches", None)  # rebuilt where the stage runs
        return state


class Doc:
    """One document's shared features, computed on first use.

    Args:
        text: the document.
        caches: the owning stage's caches.
        splitter: the word splitter (default: DataTrove's English one, ``caches.words``).
    """

    __slots__ = ("text", "caches", "_split", "_words", "_n_words", "_counts")

    def __init__(self, text: str, caches: DocCaches, splitter: Splitter | None = None):
        self.text = text
        self.caches = caches
        self._split = splitter
        self._words: list[str] | None = None
        self._n_words: int | None = None
        self._counts: Counter[str] | None = None

    @property
    def n_words(self) -> int:
        """Number of words."""
        if self._n_words is None:
            if self._words is None and self._split is None:
                self._n_words = self.caches.words.count(self.text)  # English: counts without building the list
            else:
                self._n_words = len(self.words)
        return self._n_words

    @property
    def words(self) -> list[str]:
        if self._words is None:
            self._words = (self._split or self.caches.words.split)(self.text)
            self._n_words = len(self._words)
        return self._words

    @property
    def counts(self) -> Counter[str]:
        """Occurrences of each distinct word."""
        if self._counts is None:
            self._counts = Counter(self.words)
        return self._counts


def find_duplicates(items: list[str]) -> tuple[int, int]:
    """(number of items seen before, their total characters)."""
    seen: set[str] = set()
    dups = chars = 0
    for x in items:
        if x in seen:
            dups += 1
            chars += len(x)
        else:
            seen.add(x)
    return dups, chars


def ratio(a: float, b: float) -> float:
    """``a / b``, 0 when ``b`` is 0."""
    return a / b if b else 0.0
