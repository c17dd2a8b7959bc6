"""The folder name a source's token shards get: one rule for every writer.

``trinity-data rsdb write-jsonl`` and the tokenize job both write one folder per source
under their output folder, and the mixture and loader find the folders by that name, so
the rule lives here, in pure Python that any package may import.
"""

from __future__ import annotations

import re

from common.errors import TrinityError

__all__ = ["SourceNameClash", "claim_source_dir", "source_dir_name"]

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def source_dir_name(source: str) -> str:
    """A portable folder name for ``source``: runs of other characters become ``_``.

    A name that would be empty, hidden (``.``) or read as private (``_``) gets an ``s``
    in front. Distinct sources can map to one folder (``"a b"`` and ``"a_b"``); writers
    go through :func:`claim_source_dir`, which refuses that.

    >>> source_dir_name("web/en"), source_dir_name(".hidden"), source_dir_name("")
    ('web_en', 's.hidden', 's')
    """
    safe = _UNSAFE.sub("_", source)
    if not safe or safe.startswith((".", "_")):
        safe = "s" + safe
    return safe


class SourceNameClash(TrinityError, ValueError):
    """Two distinct sources would share one shard folder."""


def claim_source_dir(taken: dict[str, str], source: str) -> str:
    """The folder of ``source``, recorded in ``taken`` (folder -> source).

    Two sources that map to one folder would mix their shards (or overwrite each
    other's), so the second one is refused, naming both.

    >>> taken = {}
    >>> claim_source_dir(taken, "web en"), claim_source_dir(taken, "web en")
    ('web_en', 'web_en')
    >>> claim_source_dir(taken, "web/en")
    Traceback (most recent call last):
    ...
    rsdb.naming.SourceNameClash: sources 'web en' and 'web/en' both map to shard folder 'web_en'; rename one of them
    """
    folder = source_dir_name(source)
    holder = taken.setdefault(folder, source)
    if holder != source:
        raise SourceNameClash(f"sources {holder!r} and {source!r} both map to shard folder {folder!r}; "
                              "rename one of them")
    return folder
