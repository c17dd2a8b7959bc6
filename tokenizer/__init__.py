"""Tokenizer: a byte-level BPE trainer with place-aligned digits and script isolation.

The trained artefact is a standard ``tokenizer.json`` (HuggingFace `tokenizers`),
loadable as it is by `tokenizers`, ``transformers.AutoTokenizer`` and vLLM.

>>> import tokenizer
>>> tok = tokenizer.load("out/demo/tokenizer")            # doctest: +SKIP
>>> ids = tok.encode("The price is 1234567!").ids          # doctest: +SKIP
>>> [tokenizer.bos_id(tok), *ids, tokenizer.eos_id(tok)]   # doctest: +SKIP
"""

from __future__ import annotations

import re
from pathlib import Path

from common.errors import ConfigError, TrinityError

from ._bytes import to_bytes as _to_bytes
from .config import CorpusConfig, TrainConfig
from .pretokenize import SPECIAL_TOKENS, build_pre_tokenizer, split_text
from .tiktoken_compat import FastEncoder, to_tiktoken
from .train import TrainResult, save, train

__all__ = [
    "SPECIAL_TOKENS",
    "CorpusConfig",
    "TrainConfig",
    "TrainResult",
    "train",
    "save",
    "load",
    "special_id",
    "bos_id",
    "eos_id",
    "pad_id",
    "encode_bytes",
    "decode_bytes",
    "build_pre_tokenizer",
    "to_tiktoken",
    "FastEncoder",
    "split_text",
]


def load(path: str | Path):
    """Load a trained tokenizer: a folder holding ``tokenizer.json``, or the file.

    Returns:
        a ``tokenizers.Tokenizer``.

    Raises:
        ConfigError: nothing loadable at ``path``.
    """
    from tokenizers import Tokenizer

    p = Path(path)
    file = p / "tokenizer.json" if p.is_dir() else p
    if not file.is_file():
        raise ConfigError(f"{path}: no tokenizer.json there")
    try:
        return Tokenizer.from_file(str(file))
    except Exception as exc:  # tokenizers raises a bare Exception on a bad file
        raise ConfigError(f"{file}: not a valid tokenizer.json ({exc})") from None


def special_id(tok, token: str) -> int:
    """Id of special token ``token`` (e.g. ``"<|im_start|>"``) in ``tok``.

    Raises:
        TrinityError: the tokenizer does not define it.
    """
    i = tok.token_to_id(token)
    if i is None:
        raise TrinityError(f"tokenizer has no special token {token!r}")
    return int(i)


def bos_id(tok) -> int:
    """Id of ``<|bos|>`` (0 in tokenizers trained here)."""
    return special_id(tok, SPECIAL_TOKENS[0])


def eos_id(tok) -> int:
    """Id of ``<|eos|>`` (1 in tokenizers trained here)."""
    return special_id(tok, SPECIAL_TOKENS[1])


def pad_id(tok) -> int:
    """Id of ``<|pad|>`` (2 in tokenizers trained here)."""
    return special_id(tok, SPECIAL_TOKENS[2])


def _byte_ids(tok) -> list[int]:
    from ._bytes import byte_to_char

    ids = [tok.token_to_id(c) for c in byte_to_char()]
    if any(i is None for i in ids):
        raise TrinityError("not a byte-level tokenizer: some of the 256 byte tokens are missing")
    return ids


_BAD_BYTE = re.compile("([\udc80-\udcff])")


def encode_bytes(tok, data: bytes) -> list[int]:
    """Encode arbitrary bytes, invalid UTF-8 included, without special tokens.

    Valid UTF-8 stretches go through ``tok.encode``; each byte that is not part of
    valid UTF-8 becomes its single-byte token. :func:`decode_bytes` inverts it
    exactly.

    >>> tok = load("out/demo/tokenizer")                          # doctest: +SKIP
    >>> decode_bytes(tok, encode_bytes(tok, b"ok\\xff\\xfe ok")) # doctest: +SKIP
    b'ok\\xff\\xfe ok'
    """
    # Split into valid UTF-8 stretches and single bad bytes (surrogateescape marks
    # each bad byte as one lone surrogate, in one linear pass), then encode all the
    # stretches in one batch call (one call per stretch would cost ~0.1 ms each).
    pieces = _BAD_BYTE.split(data.decode("utf-8", "surrogateescape"))
    parts: list[str | int] = [
        ord(p) - 0xDC00 if len(p) == 1 and 0xDC80 <= ord(p) <= 0xDCFF else p for p in pieces if p
    ]
    texts = [p for p in parts if isinstance(p, str)]
    encoded = iter(tok.encode_batch_fast(texts, add_special_tokens=False) if texts else [])
    byte_ids = _byte_ids(tok) if len(texts) < len(parts) else None
    out: list[int] = []
    for p in parts:
        out += next(encoded).ids if isinstance(p, str) else [byte_ids[p]]
    return out


def decode_bytes(tok, ids) -> bytes:
    """The exact bytes of ``ids`` (special tokens as their text), never lossy."""
    parts = []
    for i in ids:
        t = tok.id_to_token(int(i))
        if t is None:
            raise TrinityError(f"token id {i} is outside the vocabulary")
        if t in SPECIAL_TOKENS:
            parts.append(t.encode("utf-8"))
        else:
            parts.append(_to_bytes(t))
    return b"".join(parts)
