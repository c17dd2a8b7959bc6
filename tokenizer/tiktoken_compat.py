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
