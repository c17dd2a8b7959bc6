"""RSDB: the Random Sequential Document Buffer loader and its token-shard format."""

from ._core import core_version as _core_version
from .errors import ConfigError, LoaderError, ShardError, TrinityError

__all__ = ["ConfigError", "LoaderError", "ShardError", "TrinityError"]
