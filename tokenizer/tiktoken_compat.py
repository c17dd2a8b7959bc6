"""A `tiktoken.Encoding` twin of a trained tokenizer: same ranks, one-regex split.

tiktoken accepts a single regex, so the twin uses
:data:`tokenizer.pretokenize.TIKTOKEN_PATTERN` (or its ``trinity_strict`` form, read
from the tokenizer's own pre-tokenizer; the same rules as one regex, linear
in a digit run's length like the two-step pipeline). Token ids equal the
`tokenizers` ids because ids are assigned in merge order and both run a piece
that is a vocabulary token as that token. In principle they can differ where
tiktoken merges a pair whose concatenation is a token that the learned merges built
from a different split; measured, they did not: on the demo corpus (3,344 documents,
9.94M tokens, the demo's 8,192-token vocabulary) every id was identical
(``benchmarks/fast_encoder_agreement.py``). Tests check equality on multilingual
text, Japanese and digit runs.
"""

from __future__ import annotations

import itertools
import re
from concurrent.futures import ThreadPoolExecutor

from .pretokenize import SPECIAL_TOKENS, kind_of, tiktoken_pattern
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
    # The one-regex form of the rules this tokenizer was trained with (CJK joined or strict).
    pattern = tiktoken_pattern(kind_of(tok))
    return tiktoken.Encoding(name, pat_str=pattern, mergeable_ranks=ranks, special_tokens=specials)


_SPECIAL = re.compile("|".join(re.escape(s) for s in SPECIAL_TOKENS))


class FastEncoder:
    """Encode with the tiktoken twin at tiktoken speed (ids as ``tok``'s: see the module note).

    An optional fast path for bulk tokenization. Documents containing special-token
    text such as ``<|eos|>`` go to `tokenizers` instead (`tokenizers` matches it as
    the special token; tiktoken's ordinary encoding spells it out); the check is a
    substring search for ``<|`` (memchr speed), and a regex only where it is found.
    Long digit runs need no fallback: the twin's digit rule is linear.

    Batches run on the calling thread plus ``threads - 1`` pool threads kept for the
    encoder's life (tiktoken releases the GIL while it encodes), in contiguous
    chunks of about :attr:`CHUNK_CHARS` characters rather than one task per
    document (tiktoken's ``encode_ordinary_batch`` builds a pool and a future per
    document, which costs as much as encoding a short paragraph); with
    ``threads=1``, a plain loop.

    Args:
        tok: a tokenizer trained here (`tokenizers` Tokenizer).
        threads: encoding threads.
        enc: the twin to use, if one was built already (``to_tiktoken(tok)``).
    """

    CHUNK_CHARS = 16_384

    def __init__(self, tok, threads: int = 2, enc=None):
        self.tok = tok
        self.enc = enc if enc is not None else to_tiktoken(tok)
        self.threads = max(1, int(threads))
        self._pool: ThreadPoolExecutor | None = None

    @staticmethod
    def _needs_slow_path(text: str) -> bool:
        return "<|" in text and _SPECIAL.search(text) is not None

    def _encode_chunk(self, texts: list[str]) -> list[list[int]]:
        encode = self.enc.encode_ordinary
        return [encode(t) for t in texts]

    def _encode_fast(self, texts: list[str]) -> list[list[int]]:
        n = len(texts)
        if self.threads == 1 or n < 2:
            return self._encode_chunk(texts)
        # Contiguous chunks of about CHUNK_CHARS characters: a long document is a task
        # of its own, short ones share a task (one future per document costs as much
        # as encoding a short paragraph).
        parts, start, acc = [], 0, 0
        for i, t in enumerate(texts):
            acc += len(t)
            if acc >= self.CHUNK_CHARS:
                parts.append(texts[start : i + 1])
                start, acc = i + 1, 0
        if start < n:
            parts.append(texts[start:])
        # The calling thread works too (threads - 1 pool workers): each takes the
        # next chunk until none is left, so the load balances itself.
        results: list[list[list[int]] | None] = [None] * len(parts)
        ticket = itertools.count()  # next() on a count is atomic under the GIL

        def work() -> None:
            while (i := next(ticket)) < len(parts):
                results[i] = self._encode_chunk(parts[i])

        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.threads - 1, thread_name_prefix="fast-encoder")
        futures = [self._pool.submit(work) for _ in range(min(self.threads - 1, len(parts) - 1))]
        work()
        for f in futures:
            f.result()
        return [ids for part in results for ids in part]

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """Ids of each text, no special tokens added (as ``tok.encode_batch_fast(texts,
        add_special_tokens=False)``)."""
        slow = [i for i, t in enumerate(texts) if self._needs_slow_path(t)]
        if not slow:
            return self._encode_fast(texts)
        skip = set(slow)
        fast = iter(self._encode_fast([t for i, t in enumerate(texts) if i not in skip]))
        encs = iter(self.tok.encode_batch_fast([texts[i] for i in slow], add_special_tokens=False))
        return [next(encs).ids if i in skip else next(fast) for i in range(len(texts))]

    def close(self) -> None:
        """Stop the thread pool (also done at interpreter exit)."""
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
