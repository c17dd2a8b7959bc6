"""A plain numpy reference of RSDB packing, written to be read, not to be fast.

It is the yardstick the compiled loader is compared against in
``benchmarks/loader_bench.py``: same algorithm, same chunk rule, same batch layout,
only in Python + numpy.

Algorithm (Random Sequential Document Buffer):

* all documents of all sources form one stream, shuffled once per epoch;
* a pool holds ``buffer_docs`` open documents, each with a read head;
* a sequence of ``seq_len + 1`` tokens is filled by repeatedly picking a pool slot
  uniformly at random and copying ``chunk = min(remaining in document, space left)``
  tokens from its read head (``max_chunk`` caps the chunk when set);
* a finished document leaves the pool; the pool is refilled from the stream in
  batches (when half of it is empty) rather than one document at a time;
* at the end of the epoch the remaining pool drains, and the last sequence is
  padded (``loss_mask`` False) instead of dropped.

Each batch is a dict of numpy arrays with the RSDB layout: ``tokens`` int32,
``loss_mask`` bool, ``position_ids`` int32 (restart at 0 at every chunk),
``doc_ids`` int32 (the document's index within its source), ``source_ids`` int16,
all ``(batch_size, seq_len + 1)``, and ``cu_seqlens`` int32 ``(batch_size, W)`` with
``W`` one more than the most segments in a row of the batch.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import numpy as np


class NumpyRSDB:
    """Reference RSDB over shard views (anything with ``offsets`` and ``tokens``).

    Args:
        sources: source name -> list of shard views (``rsdb.open_shards(...)`` shards
            or ``rsdb.open_megatron(...)``).
        seq_len: tokens per training sequence; rows hold ``seq_len + 1`` tokens.
        batch_size: rows per batch.
        buffer_docs: documents open in the pool.
        max_chunk: optional cap on tokens copied from one document per pick.
        seed: RNG seed (document order and picks).
    """

    def __init__(
        self,
        sources: Mapping[str, Sequence],
        *,
        seq_len: int = 8192,
        batch_size: int = 8,
        buffer_docs: int = 1024,
        max_chunk: int | None = None,
        seed: int = 0,
    ):
        self.seq_len = seq_len
        self.batch_size = batch_size
        self.buffer_docs = buffer_docs
        self.max_chunk = max_chunk
        self.rng = np.random.default_rng(seed)
        self.source_names = list(sources)
        # Flatten (source, shard) into one list; a document is (shard index, doc index).
        self.shards = []
        self.shard_source = []
        for si, name in enumerate(self.source_names):
            for view in sources[name]:
                self.shards.append(view)
                self.shard_source.append(si)
        counts = np.array([v.num_docs for v in self.shards], dtype=np.int64)
        self.shard_first_doc = np.concatenate([[0], np.cumsum(counts)])
        self.num_docs = int(self.shard_first_doc[-1])
        # global index of each source's first document (doc ids count within the source)
        self.source_first_doc = [int(self.shard_first_doc[self.shard_source.index(si)])
                                 if si in self.shard_source else 0 for si in range(len(self.source_names))]

    def _doc(self, gid: int) -> tuple[np.ndarray, int]:
        """Tokens of global document ``gid`` and its source index."""
        s = int(np.searchsorted(self.shard_first_doc, gid, side="right") - 1)
        view = self.shards[s]
        i = gid - int(self.shard_first_doc[s])
        return view.tokens[view.offsets[i] : view.offsets[i + 1]], self.shard_source[s]

    def _doc_in_source(self, gid: int, src: int) -> int:
        return gid - self.source_first_doc[src]

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        order = self.rng.permutation(self.num_docs)
        next_doc = 0
        pool: list[list] = []  # each entry: [tokens, read head, global doc id, source]

        def refill():
            nonlocal next_doc
            while len(pool) < self.buffer_docs and next_doc < len(order):
                gid = int(order[next_doc])
                next_doc += 1
                toks, src = self._doc(gid)
                if len(toks):
                    pool.append([toks, 0, self._doc_in_source(gid, src), src])

        refill()
        row_len = self.seq_len + 1
        arange = np.arange(row_len, dtype=np.int32)
        while pool:
            b = self._empty_batch()
            rows_cu = []
            for r in range(self.batch_size):
                pos = 0
                cu = [0]
                while pos < row_len and pool:
                    k = int(self.rng.integers(len(pool)))
                    slot = pool[k]
                    toks, head, gid, src = slot
                    chunk = min(len(toks) - head, row_len - pos)
                    if self.max_chunk:
                        chunk = min(chunk, self.max_chunk)
                    end = pos + chunk
                    b["tokens"][r, pos:end] = toks[head : head + chunk]
                    b["position_ids"][r, pos:end] = arange[:chunk]
                    b["doc_ids"][r, pos:end] = gid
                    b["source_ids"][r, pos:end] = src
                    b["loss_mask"][r, pos:end] = True
                    pos = end
                    cu.append(pos)
                    slot[1] = head + chunk
                    if slot[1] == len(toks):
                        # Swap-remove the finished document; refill in batches.
                        pool[k] = pool[-1]
                        pool.pop()
                        if len(pool) <= self.buffer_docs // 2:
                            refill()
                if pos < row_len:  # end of epoch: pad the tail as one masked segment
                    cu.append(row_len)
                rows_cu.append(cu)
            width = max(len(cu) for cu in rows_cu)
            b["cu_seqlens"] = np.full((self.batch_size, width), row_len, np.int32)
            for r, cu in enumerate(rows_cu):
                b["cu_seqlens"][r, : len(cu)] = cu
            yield b

    def _empty_batch(self) -> dict[str, np.ndarray]:
        shape = (self.batch_size, self.seq_len + 1)
        return {
            "tokens": np.zeros(shape, np.int32),
            "loss_mask": np.zeros(shape, bool),
            "position_ids": np.zeros(shape, np.int32),
            "doc_ids": np.full(shape, -1, np.int32),
            "source_ids": np.full(shape, -1, np.int16),
        }
