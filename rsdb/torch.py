"""PyTorch wrapper: :class:`RSDBIterableDataset` for ``torch.utils.data.DataLoader``.

Each DataLoader worker builds its own :class:`rsdb.RSDBLoader` with
``worker_id``/``num_workers`` from ``get_worker_info()``, so workers read disjoint
document streams and the DataLoader's round-robin order is the global step order the
loader's phase schedule assumes. Use ``batch_size=None`` (or :meth:`RSDBIterableDataset.dataloader`,
which refuses anything else): the dataset yields whole batches (dicts of tensors that share
memory with the loader's numpy arrays); DataLoader's default ``batch_size=1`` would add a
leading dimension, ``(1, B, L+1)``. ``len(ds)`` is the number of batches of one pass.

Worker batches travel in shared memory: in a DataLoader worker, each batch's arrays are
views of one fresh shared-memory block that the loader fills in place
(:meth:`rsdb.RSDBLoader.next_into`), so the DataLoader sends one block per batch,
without a copy, instead of moving six tensors into shared memory one by one.

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

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

try:
    import torch
    from torch.utils.data import IterableDataset, get_worker_info
except ImportError as exc:  # torch is an optional extra
    raise ImportError("rsdb.torch needs PyTorch: pip install 'trinity-data[torch]'") from exc

from .errors import LoaderError
from .loader import RSDBLoader

__all__ = ["RSDBIterableDataset", "StateTracker", "gather_distributed"]

STATE_KEY = "rsdb_state"


class RSDBIterableDataset(IterableDataset):
    """An ``IterableDataset`` of RSDB batches (dicts of torch tensors).

    Args:
        sources: as for :class:`rsdb.RSDBLoader`.
        return_state: add ``batch["rsdb_state"]``, the producing worker's loader state
            after this batch (a small dict), for :class:`StateTracker`.
        shared_memory: fill each batch into one fresh shared-memory block (see the
            module docstring). None (default): in DataLoader workers only; in the main
            process the batch's tensors share memory with the loader's numpy arrays.
        **loader_kwargs: any :class:`rsdb.RSDBLoader` argument except ``worker_id`` and
            ``num_workers``, which come from the DataLoader.
    """

    def __init__(self, sources: Mapping[str, Any], *, return_state: bool = False,
                 shared_memory: bool | None = None, **loader_kwargs: Any):
        super().__init__()
        for key in ("worker_id", "num_workers"):
            if key in loader_kwargs:
                raise LoaderError(f"{key} is set by the DataLoader; do not pass it to RSDBIterableDataset")
        self.sources = dict(sources)
        self.loader_kwargs = loader_kwargs
        self.return_state = return_state
        self.shared_memory = shared_memory
        self._resume: dict[str, Any] | None = None

    #: DataLoader workers that ``len()`` counts for; :meth:`dataloader` sets it.
    dataloader_workers: int = 1

    def __len__(self) -> int:
        """Batches one pass of a DataLoader over this dataset yields, all workers together.

        Counts for :attr:`dataloader_workers` workers (set by :meth:`dataloader`; 1 for
        ``DataLoader(ds, batch_size=None)`` in the main process). Finite mode: every
        worker yields the same number of batches; phased mode: the schedule's steps.
        Endless mode without phases has no length (TypeError, as for ``RSDBLoader``).
        """
        return self.num_batches(self.dataloader_workers)

    def num_batches(self, num_workers: int = 1) -> int:
        """Batches of one full pass with ``num_workers`` DataLoader workers (0 counts as 1)."""
        nw = max(1, int(num_workers))
        return sum(len(RSDBLoader(self.sources, worker_id=w, num_workers=nw, **self.loader_kwargs))
                   for w in range(nw))

    def dataloader(self, *, num_workers: int = 0, **kwargs: Any) -> "torch.utils.data.DataLoader":
        """``DataLoader(self, batch_size=None, num_workers=...)``: the dataset yields whole batches.

        DataLoader's default ``batch_size=1`` would stack one batch into a new leading
        dimension, ``(1, B, L+1)``; any ``batch_size`` but None is refused here.
        """
        if kwargs.pop("batch_size", None) is not None:
            raise LoaderError("RSDBIterableDataset yields whole batches: use batch_size=None (set batch_size on "
                              "the dataset instead)")
        self.dataloader_workers = max(1, int(num_workers))
        return torch.utils.data.DataLoader(self, batch_size=None, num_workers=num_workers, **kwargs)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resume from a :meth:`StateTracker.state_dict` or a global state (next iteration on).

        A tracker state continues exactly with the same ``num_workers`` (and the same
        loader arguments). A global state from :func:`rsdb.gather_state` (or
        :func:`gather_distributed`) may come from any world size, worker count, batch
        size, sequence length and pool size; every worker takes its share.
        """
        from .state import is_global_state, verify_global

        if is_global_state(state):
            verify_global(state)
            self._resume = {"global": state}
            return
        if not isinstance(state, Mapping) or "workers" not in state:
            raise LoaderError("expected a StateTracker.state_dict() with 'workers' and 'next_worker', "
                              "or a global state from rsdb.gather_state")
        self._resume = dict(state)

    def make_loader(self, worker: tuple[int, int] | None = None) -> RSDBLoader:
        """This DataLoader worker's loader (``worker``: (id, count) instead of get_worker_info())."""
        info = get_worker_info()
        wid, nw = worker if worker is not None else ((info.id, info.num_workers) if info is not None else (0, 1))
        state = None
        if self._resume is not None and "global" in self._resume:
            loader = RSDBLoader(self.sources, worker_id=wid, num_workers=nw, **self.loader_kwargs)
            loader.load_state_dict(self._resume["global"])
            return loader
        if self._resume is not None:
            if int(self._resume.get("num_workers", nw)) != nw:
                raise LoaderError(f"state was saved with {self._resume.get('num_workers')} workers, this DataLoader "
                                  f"has {nw}: to change num_workers, gather the tracker states of every rank "
                                  "(rsdb.torch.gather_distributed or rsdb.gather_state) and load the global state")
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
        shm = self.shared_memory if self.shared_memory is not None else get_worker_info() is not None
        batches = _shared_batches(loader) if shm else ({k: torch.from_numpy(v) for k, v in b.items()} for b in loader)
        for out in batches:
            if self.return_state:
                out[STATE_KEY] = loader.state_dict()
            yield out


_TORCH_DTYPE = {np.dtype(np.int32): torch.int32, np.dtype(np.int64): torch.int64,
                np.dtype(np.int16): torch.int16, np.dtype(np.bool_): torch.bool}


def _shared_batches(loader: RSDBLoader) -> Iterator[dict[str, Any]]:
    """Batches whose tensors are views of one new shared-memory block each."""
    new_shared = getattr(torch.UntypedStorage, "_new_shared", None)
    layout: dict = {}
    while True:
        if loader.buffer_layout() != layout:  # first batch, or a scheduled shape change
            layout = loader.buffer_layout()
            offsets, total = {}, 0
            for k, (shape, dtype) in layout.items():
                offsets[k] = total
                total += -(-int(np.prod(shape)) * dtype.itemsize // 64) * 64  # 64-byte aligned views
            B = layout["tokens"][0][0]
        if new_shared is not None:
            flat = torch.empty(0, dtype=torch.uint8).set_(new_shared(total))
        else:  # older torch: allocate, then move into shared memory
            flat = torch.empty(total, dtype=torch.uint8).share_memory_()
        raw = flat.numpy()
        views, arrays = {}, {}
        for k, (shape, dtype) in layout.items():
            n = int(np.prod(shape)) * dtype.itemsize
            arrays[k] = raw[offsets[k]: offsets[k] + n].view(dtype).reshape(shape)
            views[k] = flat[offsets[k]: offsets[k] + n].view(_TORCH_DTYPE[dtype]).view(shape)
        try:
            batch = loader.next_into(arrays)
        except StopIteration:
            return
        if "cu_seqlens" in views:
            W = batch["cu_seqlens"].shape[1]
            views["cu_seqlens"] = views["cu_seqlens"][: B * W].view(B, W)
        yield views


class StateTracker:
    """Remembers the latest loader state of every worker from batches the trainer consumed.

    Pass ``dataset`` to start with every worker's state before its first batch, so a
    checkpoint taken after fewer steps than workers still has every worker's part (a
    global gather needs them all); it builds one loader per worker here (manifests and
    the state only, no data).

    >>> tracker = StateTracker(num_workers=2)  # then tracker.update(batch) per batch
    """

    def __init__(self, num_workers: int, dataset: RSDBIterableDataset | None = None):
        self.num_workers = max(1, int(num_workers))
        self.states: dict[str, Any] = {}
        self.next_worker = 0
        if dataset is not None:
            resume = dataset._resume or {}
            self.next_worker = int(resume.get("next_worker", 0)) if "global" not in resume else 0
            for i in range(self.num_workers):
                loader = dataset.make_loader((i, self.num_workers))
                self.states[str(loader.config.worker_id)] = loader.state_dict()

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


def gather_distributed(tracker: StateTracker | Mapping[str, Any], *, dst: int = 0, group: Any = None
                       ) -> dict[str, Any] | None:
    """Gather every rank's tracker state into one global state on rank ``dst`` (None elsewhere).

    Call it on every rank of a ``torch.distributed`` job at the same step (a collective;
    any backend with object gathers, gloo included). Rank ``dst`` receives the parts and
    merges them with :func:`rsdb.gather_state`; save that (``rsdb.save_state``) and load
    it on any new topology with ``dataset.load_state_dict``. Only ``dst`` holds all the
    parts, so memory on the other ranks stays at their own state.
    """
    import torch.distributed as dist

    from .state import gather_state

    part = tracker.state_dict() if isinstance(tracker, StateTracker) else dict(tracker)
    rank = dist.get_rank(group)
    parts: list[Any] | None = [None] * dist.get_world_size(group) if rank == dst else None
    dist.gather_object(part, parts, dst=dst, group=group)
    return gather_state(parts) if rank == dst else None
