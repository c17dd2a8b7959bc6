"""A `tiktoken.Encoding` twin of a trained tokenizer: same ranks, one-regex split.

tiktoken accepts a single regex, so the twin uses
:data:`tokenizer.pretokenize.TIKTOKEN_PATTERN` (the same rules with a right-aligned
look-ahead for digits, quadratic on very long digit runs). Token ids equal the
`tokenizers` ids because ids are assigned in merge order and both run a piece
that is a vocabulary token as that token; they can differ only where tiktoken
merges a pair whose concatenation is a token that the learned merges built from a
different split (rare; the benchmark reports the agreement it measures).
"""

from __future__ import annotations

import re

from .pretokenize import SPECIAL_TOKENS, TIKTOKEN_PATTERN
from ._bytes import to_bytes


def to_tiktoken(tok, name: str = "trinity"):
    """Build a ``tiktoken.Encoding`` from a byte-level `tokenizers` Tokenizer.

    >>> enc = to_tiktoken(tokenizer.load("out/demo/tokenizer"))   # doctest: +SKIP
    >>> enc.encode_ordinary("The price is 1234567!")              # doctest: +SKIP
    """
    import tiktoken

    ranks: dict[bytes, int] = {}
    specials: dict[str, int] = {}
    for token, i in tok.get_vocab(with_added_tokens=True).items():
        if token in SPECIAL_TOKENS:
            specials[token] = i
        else:
            ranks[to_bytes(token)] = i
    return tiktoken.Encoding(name, pat_str=TIKTOKEN_PATTERN, mergeable_ranks=ranks, special_tokens=specials)


# Digit runs longer than this go to `tokenizers` instead: the twin's one-regex
# digit rule is quadratic in a run's length (256 digits cost ~20k regex steps).
MAX_TWIN_DIGIT_RUN = 256
_LONG_DIGITS = re.compile(r"[0-9]{%d,}" % (MAX_TWIN_DIGIT_RUN + 1))


class FastEncoder:
    """Encode with the tiktoken twin, ids identical to ``tok``'s, at tiktoken speed.

    An optional fast path for bulk tokenization. Documents that tiktoken would
    treat differently go to `tokenizers` instead: those holding a digit run longer
    than :data:`MAX_TWIN_DIGIT_RUN` (the twin's digit rule is quadratic in a run's
    length) and those containing special-token text such as ``<|eos|>``
    (`tokenizers` matches it as the special token; tiktoken's ordinary encoding
    spells it out).

    Args:
        tok: a tokenizer trained here (`tokenizers` Tokenizer).
        threads: tiktoken batch threads.
    """

    def __init__(self, tok, threads: int = 2):
        self.tok = tok
        self.enc = to_tiktoken(tok)
        self.threads = threads

    def _needs_slow_path(self, text: str) -> bool:
        return _LONG_DIGITS.search(text) is not None or ("<|" in text and any(s in text for s in SPECIAL_TOKENS))

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        slow = [i for i, t in enumerate(texts) if self._needs_slow_path(t)]
        out = self.enc.encode_ordinary_batch(texts, num_threads=self.threads) if len(slow) < len(texts) else [
            [] for _ in texts
        ]
        if slow:
            encs = self.tok.encode_batch_fast([texts[i] for i in slow], add_special_tokens=False)
            for i, e in zip(slow, encs):
                out[i] = e.ids
        return out
