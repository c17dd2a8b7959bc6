"""The byte-level alphabet: each of the 256 bytes as one printable character.

This is the GPT-2 table that `tokenizers`' ``ByteLevel`` uses: printable Latin-1
bytes map to themselves, the other 68 to U+0100 onwards (space is ``Ġ``, newline
``Ċ``). No mapped character is whitespace, which the counts route relies on.
"""

from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=1)
def byte_to_char() -> tuple[str, ...]:
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    table: dict[int, str] = {b: chr(b) for b in keep}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return tuple(table[b] for b in range(256))


@lru_cache(maxsize=1)
def char_to_byte() -> dict[str, int]:
    return {c: b for b, c in enumerate(byte_to_char())}


def to_bytes(token: str) -> bytes:
    table = char_to_byte()
    return bytes(table[c] for c in token)
