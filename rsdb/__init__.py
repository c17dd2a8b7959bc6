"""RSDB: the Random Sequential Document Buffer loader and its token-shard format.

>>> import rsdb, tempfile
>>> d = tempfile.mkdtemp()
>>> _ = rsdb.write_shards(d, [[1, 2, 3], [4, 5]], source="web")
"""

from .errors import ConfigError, LoaderError, ShardError, TrinityError
from .megatron import open_megatron
from .shards import ShardView, ShardWriter, TokenShards, open_shards, write_shards

__all__ = [
    "ConfigError",
    "LoaderError",
    "ShardError",
    "ShardView",
    "ShardWriter",
    "TokenShards",
    "TrinityError",
    "open_megatron",
    "open_shards",
    "write_shards",
]
