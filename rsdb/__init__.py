"""RSDB: the Random Sequential Document Buffer loader and its token-shard format.

>>> import rsdb, tempfile
>>> d = tempfile.mkdtemp()
>>> _ = rsdb.write_shards(d, [[1, 2, 3], [4, 5]], source="web")
>>> loader = rsdb.RSDBLoader({"web": d}, seq_len=4, batch_size=1, buffer_docs=2, epochs=1)
>>> sorted(int(t) for b in loader for t, m in zip(b["tokens"].ravel(), b["loss_mask"].ravel()) if m)
[1, 2, 3, 4, 5]

The public names load on first use (PEP 562), so ``import rsdb.errors`` (the root error
class every package shares) and the other pure-Python modules work on a checkout whose
compiled core (``rsdb._core``) is not built; only the loader needs it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# public name -> submodule that defines it
_EXPORTS = {
    "ConfigError": "errors",
    "LoaderError": "errors",
    "ShardError": "errors",
    "TrinityError": "errors",
    "Phase": "loader",
    "RSDBLoader": "loader",
    "open_megatron": "megatron",
    "write_megatron": "megatron",
    "hf_packed": "packing",
    "label_mask": "packing",
    "varlen_args": "packing",
    "ShardView": "shards",
    "ShardWriter": "shards",
    "TokenShards": "shards",
    "open_shards": "shards",
    "write_shards": "shards",
    "gather_state": "state",
    "load_state": "state",
    "save_state": "state",
}

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

if TYPE_CHECKING:  # static checkers and IDEs see the eager imports
    from .errors import ConfigError, LoaderError, ShardError, TrinityError
    from .loader import Phase, RSDBLoader
    from .megatron import open_megatron, write_megatron
    from .packing import hf_packed, label_mask, varlen_args
    from .shards import ShardView, ShardWriter, TokenShards, open_shards, write_shards
    from .state import gather_state, load_state, save_state


def __getattr__(name: str) -> Any:
    if name == "_core_version":  # kept for callers of the old eager alias
        return importlib.import_module("._core", __name__).core_version
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
