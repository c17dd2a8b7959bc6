"""Error types shared by every trinity-data package.

Every error the project raises on purpose subclasses :class:`TrinityError`, so a
caller can catch "our errors" in one clause. ``ConfigError`` fires when a config
is loaded, never mid-run; ``ShardError`` names the file and what is wrong with it.
"""

from __future__ import annotations


class TrinityError(Exception):
    """Base class of every error trinity-data raises on purpose."""


class ConfigError(TrinityError, ValueError):
    """A config file or argument is invalid; raised before any work starts."""


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
