"""The root error classes of trinity-data.

Every error the project raises on purpose subclasses :class:`TrinityError`, so a caller
can catch "our errors" in one clause. ``ConfigError`` fires when a config is loaded,
never mid-run. Package-specific errors (``rsdb.errors.ShardError``,
``pipeline.errors.StageError``...) derive from these and live in their packages.
"""

from __future__ import annotations

__all__ = ["ConfigError", "TrinityError"]


class TrinityError(Exception):
    """Base class of every error trinity-data raises on purpose."""


class ConfigError(TrinityError, ValueError):
    """A config file or argument is invalid; raised before any work starts."""
