"""The folder name a source's token shards get: one rule for every writer.

``trinity-data rsdb write-jsonl`` and the tokenize job both write one folder per source
under their output folder, and the mixture and loader find the folders by that name, so
the rule lives here, in pure Python that any package may import.
"""

from __future__ import annotations

import re

__all__ = ["source_dir_name"]

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def source_dir_name(source: str) -> str:
    """A portable folder name for ``source``: runs of other characters become ``_``.

    A name that would be empty, hidden (``.``) or read as private (``_``) gets an ``s``
    in front. Distinct sources can map to one folder (``"a b"`` and ``"a_b"``): name
    sources so that they stay distinct after this mapping.

    >>> source_dir_name("web/en"), source_dir_name(".hidden"), source_dir_name("")
    ('web_en', 's.hidden', 's')
    """
    safe = _UNSAFE.sub("_", source)
    if not safe or safe.startswith((".", "_")):
        safe = "s" + safe
    return safe
