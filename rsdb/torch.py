"""PyTorch wrapper: :class:`RSDBIterableDataset` for ``torch.utils.data.DataLoader``.

Each DataLoader worker builds its own :class:`rsdb.RSDBLoader` with
``worker_id``/``num_workers`` from ``get_worker_info()``, so workers read disjoint
document streams and the DataLoader's round-robin order is the global step order the
loader's phase schedule assumes. Use ``batch_size=None``: the dataset yields whole
batches (dicts of tensors that share memory with the loader's numpy arrays).

Exact resume with workers: pass ``return_state=True``, feed every batch to a
:class:`StateTracker`, save ``tracker.state_dict()`` with the checkpoint, and hand it to
``dataset.load_state_dict`` before building the next DataLoader.

>>> import tempfile, rsdb, torch
>>> d = tempfile.mkdtemp()
>>> _ = rsdb.write_shards(d, [[1, 2, 3], [4, 5]])
>>> ds = RSDBIterableDataset({"s": d}, seq_len=4, batch_size=1, epochs=1)
>>> [b["tokens"].tolist() for b in torch.utils.data.DataLoader(ds, batch_size=None)]
[[[1, 2, 3, 4, 5]]]
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

try:
    import torch
    from torch.utils.data import IterableDataset, get_worker_info
except ImportError as exc:  # torch is an optional extra
    raise ImportError("rsdb.torch needs PyTorch: pip install 'trinity-data[torch]'") from exc

from .errors import LoaderError
from .loader import RSDBLoader

__all__ = ["RSDBIterableDataset", "StateTracker"]

STATE_KEY = "rsdb_state"


class RSDBIterableDataset(IterableDataset):
    """An ``IterableDataset`` of RSDB batches (dicts of torch tensors).

    Args:
        sources: as for :class:`rsdb.RSDBLoader`.
        return_state: add ``batch["rsdb_state"]``, the producing worker's loader state
            after this batch (a small dict), for :class:`StateTracker`.
        **loader_kwargs: any :class:`rsdb.RSDBLoader` argument except ``worker_id`` and
            ``num_workers``, which come from the DataLoader.
    """

    def __init__(self, sources: Mapping[str, Any], *, return_state: bool = False, **loader_kwargs: Any):
        super().__init__()
        for key in ("worker_id", "num_workers"):
            if key in loader_kwargs:
                raise LoaderError(f"{key} is set by the DataLoader; do not pass it to RSDBIterableDataset")
        self.sources = dict(sources)
        self.loader_kwargs = loader_kwargs
        self.return_state = return_state
        self._resume: dict[str, Any] | None = None

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resume from a :meth:`StateTracker.state_dict` (applies to the next iteration)."""
        if not isinstance(state, Mapping) or "workers" not in state:
            raise LoaderError("expected a StateTracker.state_dict() with 'workers' and 'next_worker'")
        self._resume = dict(state)

    def make_loader(self) -> RSDBLoader:
        info = get_worker_info()
        wid, nw = (info.id, info.num_workers) if info is not None else (0, 1)
        state = None
        if self._resume is not None:
            if int(self._resume.get("num_workers", nw)) != nw:
                raise LoaderError(f"state was saved with {self._resume.get('num_workers')} workers, "
                                  f"this DataLoader has {nw}")
            # The DataLoader restarts its round robin at worker 0: let worker 0 play the
            # part of the worker whose batch comes next, so the global order continues.
            wid = (wid + int(self._resume.get("next_worker", 0))) % nw
            state = self._resume["workers"].get(str(wid))
        loader = RSDBLoader(self.sources, worker_id=wid, num_workers=nw, **self.loader_kwargs)
        if state is not None:
            loader.load_state_dict(state)
        return loader

    def __iter__(self):
        loader = self.make_loader()
        for batch in loader:
            out: dict[str, Any] = {k: torch.from_numpy(v) for k, v in batch.items()}
            if self.return_state:
                out[STATE_KEY] = loader.state_dict()
            yield out


class StateTracker:
    """Remembers the latest loader state of every worker from batches the trainer consumed.

    >>> tracker = StateTracker(num_workers=2)  # then tracker.update(batch) per batch
    """

    def __init__(self, num_workers: int):
        self.num_workers = max(1, int(num_workers))
        self.states: dict[str, Any] = {}
        self.next_worker = 0

    def update(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Record (and remove) ``batch["rsdb_state"]``; returns the batch."""
        state = batch.pop(STATE_KEY, None)
        if state is None:
            raise LoaderError("batch has no 'rsdb_state': build RSDBIterableDataset with return_state=True")
        wid = int(state["config"]["worker_id"])
        self.states[str(wid)] = state
        self.next_worker = (wid + 1) % self.num_workers
        return batch

    def state_dict(self) -> dict[str, Any]:
        return {"workers": dict(self.states), "next_worker": self.next_worker, "num_workers": self.num_workers}
