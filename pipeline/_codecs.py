"""Decompress input files ourselves, so a file whose codec lies is named, and damage has an offset.

fsspec's codecs raise whatever the library raises (``ZstdError: Unknown frame descriptor``
for a plain file named ``.zst``) and lose the bytes decoded just before the damage. Here:

* :func:`sniff` reads a file's first bytes and says what it really is (gzip, zstd, bz2,
  xz, Parquet, text), so a name that lies is reported before any work starts;
* :func:`decoded_chunks` decompresses with the codecs' incremental decompressors
  (``zlib``, ``bz2``, ``lzma``, ``zstandard``), multi-member / multi-frame streams
  included, yields every byte decoded before any damage, and then raises
  :class:`DamagedStream` with the compressed byte offset where decoding stopped.

Reading by compressed chunks of ``CHUNK`` bytes costs nothing measurable against the
decompression itself and bounds the error offset's resolution to one chunk for
corruption in the middle of a stream (a truncation is reported at its exact offset:
the file's end).
"""

from __future__ import annotations

import bz2
import lzma
import zlib
from typing import BinaryIO, Iterator

CHUNK = 1 << 18

MAGIC = {
    "gzip": b"\x1f\x8b",
    "zstd": b"\x28\xb5\x2f\xfd",
    "bz2": b"BZh",
    "xz": b"\xfd7zXZ\x00",
    "parquet": b"PAR1",
}
# zstd skippable frames (0x184D2A50..5F, little endian) may precede the first data frame.
_ZSTD_SKIPPABLE = tuple(bytes([b, 0x2A, 0x4D, 0x18]) for b in range(0x50, 0x60))


class DamagedStream(Exception):
    """Decoding stopped: ``offset`` is the compressed byte offset, ``decoded`` the bytes before it."""

    def __init__(self, codec: str, offset: int, decoded: int, problem: str):
        self.codec, self.offset, self.decoded, self.problem = codec, offset, decoded, problem
        super().__init__(f"{codec} stream {problem} at compressed byte offset {offset:,} "
                         f"(after {decoded:,} decoded bytes)")


def sniff(head: bytes) -> str:
    """What a file's first bytes say it is: a codec, ``parquet``, ``arrow``, ``empty``, ``text`` or ``binary``.

    >>> sniff(b"\\x1f\\x8b\\x08"), sniff(b'{"id": 1}'), sniff(b"")
    ('gzip', 'text', 'empty')
    """
    if not head:
        return "empty"
    for kind, magic in MAGIC.items():
        if head.startswith(magic):
            return kind
    if head.startswith(_ZSTD_SKIPPABLE):
        return "zstd"
    if head.startswith(b"ARROW1"):
        return "arrow"
    try:
        head.decode("utf-8")
        return "text"
    except UnicodeDecodeError as e:
        # A multi-byte character cut by the sniff window is still text.
        return "text" if e.start >= len(head) - 3 else "binary"


def _decompressor(codec: str):
    if codec == "gzip":
        return zlib.decompressobj(wbits=31)
    if codec == "bz2":
        return bz2.BZ2Decompressor()
    if codec == "xz":
        return lzma.LZMADecompressor()
    if codec == "zstd":
        import zstandard

        return zstandard.ZstdDecompressor().decompressobj()
    raise ValueError(f"unknown codec {codec!r}")


def _errors(codec: str) -> tuple[type[BaseException], ...]:
    if codec == "zstd":
        import zstandard

        return (zstandard.ZstdError,)
    return (zlib.error, OSError, EOFError, lzma.LZMAError, ValueError)


def decoded_chunks(f: BinaryIO, codec: str | None, chunk: int = CHUNK, *,
                   frames: list[tuple[int, int]] | None = None, offset: int = 0) -> Iterator[bytes]:
    """The decompressed content of ``f`` in pieces; :class:`DamagedStream` after the last good byte.

    Args:
        f: the raw (compressed) file, opened in binary mode and positioned at ``offset``.
        codec: ``gzip``, ``zstd``, ``bz2``, ``xz`` or ``None`` (plain: the bytes as they are).
        chunk: compressed bytes read at a time.
        frames: when given, ``(compressed offset, decoded offset)`` of every member/frame
            start is appended to it: a reader can later start decoding at any of them.
        offset: the compressed offset ``f`` is at (the start of a member/frame); offsets
            in errors and ``frames`` count from the file's start.
    """
    if codec is None:
        while data := f.read(chunk):
            yield data
        return
    errors = _errors(codec)
    d = _decompressor(codec)
    decoded = 0
    in_member = False  # a member/frame has started and not ended
    pending = b""
    while True:
        data = pending or f.read(chunk)
        pending = b""
        if not data:
            break
        if frames is not None and not in_member:
            frames.append((offset, decoded))
        start = offset
        try:
            out = d.decompress(data)
        except errors as e:
            raise DamagedStream(codec, start, decoded, f"is damaged ({e})") from None
        in_member = True
        offset += len(data)
        if out:
            decoded += len(out)
            yield out
        if d.eof:  # one member/frame ended; what follows it is the next one (or trailing garbage)
            rest = d.unused_data
            offset -= len(rest)
            d = _decompressor(codec)
            in_member = False
            pending = rest
    if in_member:
        raise DamagedStream(codec, offset, decoded, "ends mid-stream (truncated file)")
