"""Drive every (rank, worker) stream of one topology in-process, in the DataLoader's global order."""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any

from rsdb import RSDBLoader


@dataclass
class TopologyRun:
    states: list[dict[str, Any]]
    lengths: list[int]  # per rank: batches its workers yield together (len())
    steps: int  # global steps run
    loaders: dict = field(default_factory=dict)


def run_topology(paths, kw, world: int, workers: int, steps, state, out, record: list | None = None) -> TopologyRun:
    """Run ``steps`` global steps (an int, a fraction of the run, or None: to the end).

    Every stream is restored from ``state`` (a global state) if given. Emitted real tokens
    go to ``out[(source, doc)]`` in order; ``record`` gets (step, global tokens, (batch,
    seq_len), world) per global step. Returns each stream's state after its last batch.
    """
    loaders = {}
    for r in range(world):
        for w in range(workers):
            loader = RSDBLoader(paths, rank=r, world_size=world, worker_id=w, num_workers=workers, **kw)
            if state is not None:
                loader.load_state_dict(state)
            loaders[(r, w)] = loader
    lengths = [sum(len(loaders[(r, w)]) for w in range(workers)) for r in range(world)]
    total = lengths[0]
    if steps is None:
        steps = total
    elif isinstance(steps, float):
        steps = int(steps * total)
    steps = min(int(steps), total)
    names = loaders[(0, 0)].source_names
    for g in range(steps):
        w = g % workers
        head = loaders[(0, w)]
        if record is not None:
            record.append((g, head.global_tokens, head.batch_shape, world))
        for r in range(world):
            b = next(loaders[(r, w)])
            m = b["loss_mask"]
            for tok, doc, src in zip(b["tokens"][m].tolist(), b["doc_ids"][m].tolist(), b["source_ids"][m].tolist()):
                out[(names[src], doc)].append(tok)
    return TopologyRun([l.state_dict() for l in loaders.values()], lengths, steps, loaders)


def expected_phase_tokens(record: list, ends: list[int]) -> list[int]:
    """Tokens (rows of seq_len + 1) emitted per phase by the recorded global steps."""
    out = [0] * len(ends)
    for _, tokens, (batch, seq_len), world in record:
        out[bisect.bisect_right(ends, tokens)] += batch * (seq_len + 1) * world
    return out
