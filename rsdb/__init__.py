"""RSDB: the Random Sequential Document Buffer loader and its token-shard format.

>>> import rsdb, tempfile
>>> d = tempfile.mkdtemp()
>>> _ = rsdb.write_shards(d, [[1, 2, 3], [4, 5]], source="web")
>>> loader = rsdb.RSDBLoader({"web": d}, seq_len=4, batch_size=1, buffer_docs=2, epochs=1)
>>> sorted(int(t) for b in loader for t, m in zip(b["tokens"].ravel(), b["loss_mask"].ravel()) if m)
[1, 2, 3, 4, 5]
"""

from ._core import core_version as _core_version
from .errors import ConfigError, LoaderError, ShardError, TrinityError
from .loader import Phase, RSDBLoader
from .megatron import open_megatron, write_megatron
from .packing import hf_packed, label_mask, varlen_args
from .shards import ShardView, ShardWriter, TokenShards, open_shards, write_shards
from .state import gather_state, load_state, save_state

__all__ = [
    "ConfigError",
    "LoaderError",
    "Phase",
    "RSDBLoader",
    "ShardError",
    "ShardView",
    "ShardWriter",
    "TokenShards",
    "TrinityError",
    "gather_state",
    "load_state",
    "hf_packed",
    "label_mask",
    "open_megatron",
    "open_shards",
    "save_state",
    "varlen_args",
    "write_megatron",
    "write_shards",
]
