"""Errors of the token-shard format and the loader.

The roots, :class:`TrinityError` and :class:`ConfigError`, live in :mod:`common.errors`
and are re-exported here (``from rsdb.errors import ConfigError`` keeps working).
``ShardError`` names the file and what is wrong with it.
"""

from __future__ import annotations

from common.errors import ConfigError, TrinityError

__all__ = ["ConfigError", "LoaderError", "ShardError", "TrinityError"]


class ShardError(TrinityError):
    """A token shard is missing, truncated or corrupt.

    Args:
        path: the offending file.
        problem: what is wrong with it, in words.
    """

    def __init__(self, path: str, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class LoaderError(TrinityError):
    """The loader was misused or its compiled core reported an error."""
