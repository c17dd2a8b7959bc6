"""Topology-free loader state: gather the per-stream states of one step, deal them out again.

A training job checkpoints one :meth:`rsdb.RSDBLoader.state_dict` per (rank, worker)
stream. :func:`gather_state` turns the states of one global step, from every stream,
into one **global state** that no longer mentions ranks or workers:

* for every source, the documents of the current epoch that no stream has started yet,
  as *pieces*: ``[begin, end)`` of the shuffled order of stream ``k`` out of ``S`` in
  epoch ``e`` (the layout that produced them; a piece names its documents without
  listing them, so this part is O(streams x sources), never O(documents));
* every partly read document (the pools' content), with its read head;
* the global token count (phase position), tokens emitted per phase and source, and
  the next epoch number of every source.

``RSDBLoader(..., world_size=W, num_workers=N, batch_size=B, ...).load_state_dict(g)``
then takes its share, computed from ``g`` and its own arguments only (:func:`deal`):
the pieces' documents and the partly read documents of every source are split into
``W x N`` contiguous, equal runs, stream ``k`` taking run ``k``. Each stream reads its
partly read documents first (from their heads), then its pieces, then its own epochs of
the new layout. So from the switch on every remaining token is emitted exactly once,
the phases keep their global token boundaries, and two restores with the same
arguments give identical batches. In finite mode (``epochs=N``) the remaining whole
epochs are carried as pieces too, and every stream yields the same number of batches.

The global state is JSON-able; large integer arrays are delta-coded, zlib-compressed
and base64-encoded. A SHA-256 digest over the whole content makes an edited or
truncated state fail to load instead of being silently accepted.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import zlib
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import numpy as np

from common.fs import atomic_write

from .errors import LoaderError
from .schedule import StepClock, coerce_schedule

__all__ = ["GLOBAL_FORMAT", "gather_state", "save_state", "load_state", "state_summary", "is_global_state",
           "remaining_documents"]

GLOBAL_FORMAT = "rsdb-global-state"
GLOBAL_VERSION = 1
_STREAM_FORMAT = "rsdb-loader-state"
# Arguments that may change between the gathered run and the restored one; every other
# fingerprint entry must be equal in all gathered parts.
_PER_STREAM = ("rank", "worker_id")
_M64 = (1 << 64) - 1


# ---- array codec -----------------------------------------------------------------------
def _pack(values: Any, *, delta: bool = False) -> str:
    """Non-negative integers as ``dtype:delta:count:base64(zlib(bytes))``."""
    a = np.asarray(values, dtype=np.int64).ravel()
    if a.size and a.min() < 0:
        raise ValueError("only non-negative integers are packed")
    if delta and a.size:
        a = np.concatenate([a[:1], np.diff(a)])
        if a.min() < 0:
            raise ValueError("delta coding needs sorted values")
    top = int(a.max()) if a.size else 0
    dt = next(d for d in ("<u1", "<u2", "<u4", "<u8") if top < 1 << (8 * np.dtype(d).itemsize))
    raw = zlib.compress(a.astype(dt).tobytes(), 6)
    return f"{dt}:{int(delta)}:{a.size}:{base64.b64encode(raw).decode('ascii')}"


def _unpack(text: Any, what: str) -> np.ndarray:
    try:
        dt, delta, n, b64 = str(text).split(":", 3)
        a = np.frombuffer(zlib.decompress(base64.b64decode(b64, validate=True)), dtype=np.dtype(dt))
        if a.size != int(n):
            raise ValueError(f"{a.size} values, header says {n}")
        a = a.astype(np.int64)
        return np.cumsum(a) if delta == "1" else a
    except Exception as exc:  # any malformed field is the same error for the caller
        raise LoaderError(f"global loader state: field {what} is corrupt ({exc})") from None


# ---- digest ----------------------------------------------------------------------------
def _digest(state: Mapping[str, Any]) -> str:
    body = {k: v for k, v in state.items() if k != "digest"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def is_global_state(state: Any) -> bool:
    return isinstance(state, Mapping) and state.get("format") == GLOBAL_FORMAT


_REQUIRED = ("version", "seed", "epochs", "sources", "units", "docs", "corpus", "phases", "tokens", "step",
             "emitted", "next_epoch", "pieces", "partial", "digest")


def verify_global(state: Any) -> None:
    """Refuse anything but a complete, unedited global state (LoaderError naming what is wrong)."""
    if not is_global_state(state):
        raise LoaderError(f"not a global RSDB loader state (format {getattr(state, 'get', lambda k: None)('format')!r})")
    missing = [k for k in _REQUIRED if k not in state]
    if missing:
        raise LoaderError(f"global loader state is missing {missing}: truncated or not written by rsdb.gather_state")
    if state["version"] != GLOBAL_VERSION:
        raise LoaderError(f"global loader state version {state['version']} != {GLOBAL_VERSION}")
    if _digest(state) != state["digest"]:
        raise LoaderError("global loader state does not match its digest: it was edited or damaged after "
                          "rsdb.gather_state wrote it")


# ---- gathering -------------------------------------------------------------------------
def _flatten(states: Any) -> Iterator[Mapping[str, Any]]:
    """Loader states from loader states, StateTracker states, or (nested) lists of them."""
    if isinstance(states, Mapping):
        if "workers" in states:  # rsdb.torch.StateTracker.state_dict()
            yield from _flatten(list(states["workers"].values()))
        elif states.get("format") == _STREAM_FORMAT:
            yield states
        elif is_global_state(states):
            raise LoaderError("this is already a global state; load it with RSDBLoader.load_state_dict")
        else:
            raise LoaderError(f"not an RSDB loader state (format {states.get('format')!r})")
        return
    if isinstance(states, (str, bytes)) or not isinstance(states, Iterable):
        raise LoaderError(f"expected loader states (dicts), got {type(states).__name__}")
    for s in states:
        yield from _flatten(s)


def _own_remainder(core: Mapping[str, Any], s: int, streams: int, k: int, epochs: int | None
                   ) -> tuple[list[tuple[int, int, int, int, int]], int]:
    """Pieces of the stream's own epochs that are still to come, and the next fresh epoch number."""
    epoch, cursor = int(core["epoch"][s]), int(core["cursor"][s])
    n = int(core["own_n_local"][s])
    out = []
    if epochs is not None:  # finite: this epoch's rest and every remaining whole epoch
        if not core["exhausted"][s] and n > 0 and epoch < epochs:
            if cursor < n:
                out.append((streams, k, epoch, cursor, n))
            out.extend((streams, k, e, 0, n) for e in range(epoch + 1, epochs))
        return out, epochs
    started = cursor > 0
    if started and cursor < n:
        out.append((streams, k, epoch, cursor, n))
    return out, epoch + 1 if started else epoch


def _merge(pieces: list[tuple[int, int, int, int, int]]) -> list[tuple[int, int, int, int, int]]:
    out: list[list[int]] = []
    for p in pieces:
        if out and out[-1][:3] == list(p[:3]) and out[-1][4] == p[3]:
            out[-1][4] = p[4]
        else:
            out.append(list(p))
    return [tuple(p) for p in out]  # type: ignore[misc]


def gather_state(states: Any) -> dict[str, Any]:
    """One topology-free state from the states of every (rank, worker) stream at one step.

    Args:
        states: every stream's :meth:`rsdb.RSDBLoader.state_dict`, or every rank's
            :meth:`rsdb.torch.StateTracker.state_dict`, as a list (nesting allowed) or
            any iterable (consumed once; the states need not all be in memory).

    Raises:
        LoaderError: naming the missing ranks/workers, the argument that differs between
            parts, or the ranks that stopped at different steps.
    """
    ref: dict[str, Any] | None = None
    seen: dict[tuple[int, int], int] = {}
    pieces: list[list[tuple[int, int, int, int, int]]] = []
    keys: list[np.ndarray] = []
    heads: list[np.ndarray] = []
    emitted: np.ndarray | None = None
    next_epoch: list[int] = []
    unit_start = unit_source = None
    stream_pieces: dict[int, list[list[tuple[int, int, int, int, int]]]] = {}
    for st in _flatten(states):
        cfg, core = st.get("config", {}), st.get("core")
        if core is None or not isinstance(cfg, Mapping):
            raise LoaderError("loader state has no 'config'/'core': truncated or not a state_dict()")
        if ref is None:
            ref = {k: v for k, v in cfg.items() if k not in _PER_STREAM}
            ref["tokens0"], ref["step0"], ref["version"] = st.get("tokens0", 0), st.get("step0", 0), st.get("version")
            ns = len(ref["sources"])
            docs = np.asarray(ref["docs"], dtype=np.int64)
            unit_start = np.concatenate([[0], np.cumsum(docs)])
            unit_source = np.repeat(np.arange(ns), ref["units"])
            pieces = [[] for _ in range(ns)]
            emitted = np.zeros(len(core["emitted"]), dtype=np.int64)
            next_epoch = [0] * ns
        else:
            mine = {k: v for k, v in cfg.items() if k not in _PER_STREAM}
            mine["tokens0"], mine["step0"], mine["version"] = st.get("tokens0", 0), st.get("step0", 0), st.get("version")
            diff = sorted(k for k in set(ref) | set(mine) if json.dumps(ref.get(k)) != json.dumps(mine.get(k)))
            if diff:
                k = diff[0]
                raise LoaderError(f"rank {cfg.get('rank')} worker {cfg.get('worker_id')}: {k} is {mine.get(k)!r}, "
                                  f"other parts have {ref.get(k)!r}; gather the states of one run and one step")
        rank, worker = int(cfg["rank"]), int(cfg["worker_id"])
        if (rank, worker) in seen:
            raise LoaderError(f"the state of rank {rank} worker {worker} is given twice")
        seen[(rank, worker)] = int(st["batches"])
        k = rank * int(ref["num_workers"]) + worker
        streams = int(ref["world_size"]) * int(ref["num_workers"])
        # carried pieces first (in order), then the stream's own remaining epochs
        per_source: list[list[tuple[int, int, int, int, int]]] = []
        c = 0
        for s in range(ns):
            mine_p = []
            for _ in range(int(core["carry_count"][s])):
                mine_p.append((int(core["carry_streams"][c]), int(core["carry_stream"][c]), int(core["carry_epoch"][c]),
                               int(core["carry_begin"][c]), int(core["carry_end"][c])))
                c += 1
            own, nxt = _own_remainder(core, s, streams, k, ref["epochs"])
            mine_p.extend(own)
            per_source.append(mine_p)
            next_epoch[s] = max(next_epoch[s], nxt)
        stream_pieces[k] = per_source
        # partly read documents: the pool's live slots and still-queued carried ones
        def cat(a: Any, b: Any) -> np.ndarray:
            return np.concatenate([np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)])

        views = cat(core["slot_view"], core["partial_view"])
        docs_ = cat(core["slot_doc"], core["partial_doc"])
        srcs = cat(core["slot_source"], np.repeat(np.arange(ns), np.asarray(core["partial_count"], dtype=np.int64)))
        if views.size:
            if views.min() < 0 or views.max() >= unit_source.size or (unit_source[views] != srcs).any():
                raise LoaderError(f"rank {rank} worker {worker}: pool slots name shards of other sources")
            keys.append(unit_start[views] + docs_)
            heads.append(cat(core["slot_head"], core["partial_head"]))
        emitted += np.asarray(core["emitted"], dtype=np.int64)
    if ref is None:
        raise LoaderError("no loader states given")
    world, nw = int(ref["world_size"]), int(ref["num_workers"])
    missing = {r: [w for w in range(nw) if (r, w) not in seen] for r in range(world)}
    missing = {r: ws for r, ws in missing.items() if ws}
    if missing:
        parts = [f"rank {r} ({'all workers' if len(ws) == nw else 'worker ' + ', '.join(map(str, ws))})"
                 for r, ws in list(missing.items())[:8]]
        more = f" and {len(missing) - 8} more ranks" if len(missing) > 8 else ""
        raise LoaderError(f"missing the state of {', '.join(parts)}{more} of {world} ranks x {nw} workers: "
                          "gather every rank's part")
    # Every rank must be at the same global step G; worker w then made ceil((G - w) / nw) batches.
    steps = {}
    for r in range(world):
        g = sum(seen[(r, w)] for w in range(nw))
        expect = [max(0, -(-(g - w) // nw)) for w in range(nw)]
        got = [seen[(r, w)] for w in range(nw)]
        if got != expect:
            raise LoaderError(f"rank {r}: workers made {got} batches, which is no global step of a round robin "
                              f"(expected {expect}); gather the states of the batches the trainer consumed "
                              "(rsdb.torch.StateTracker)")
        steps[r] = g
    if len(set(steps.values())) > 1:
        by = sorted(steps.items(), key=lambda kv: kv[1])
        raise LoaderError(f"ranks stopped at different steps (rank {by[0][0]} at {by[0][1]}, rank {by[-1][0]} at "
                          f"{by[-1][1]}): gather the states of one global step")
    g = steps[0]
    clock = StepClock(world_size=world, batch_size=ref["batch_size"], seq_len=ref["seq_len"],
                      schedule=coerce_schedule(ref.get("schedule")), tokens0=ref["tokens0"])
    for k in sorted(stream_pieces):
        for s in range(ns):
            pieces[s].extend(stream_pieces[k][s])
    key = np.concatenate(keys) if keys else np.zeros(0, np.int64)
    head = np.concatenate(heads) if heads else np.zeros(0, np.int64)
    order = np.lexsort((head, key))
    key, head = key[order], head[order]
    # (a key may repeat: with epochs=N a stream can hold a document of two epochs at once)
    out: dict[str, Any] = {
        "format": GLOBAL_FORMAT, "version": GLOBAL_VERSION, "core_version": ref["version"],
        "seed": ref["seed"], "epochs": ref["epochs"], "packing": ref["packing"],
        "shuffle_block_shards": ref.get("shuffle_block_shards", 0),
        "sources": ref["sources"], "units": ref["units"], "docs": ref["docs"], "corpus": ref["corpus"],
        "phases": ref["phases"], "tokens": clock.tokens_at(g), "step": int(ref["step0"]) + g,
        "gathered_from": {"world_size": world, "num_workers": nw, "batch_size": clock.shape_at(g)[0],
                          "seq_len": clock.shape_at(g)[1], "buffer_docs": ref["buffer_docs"]},
        "emitted": emitted.tolist(), "next_epoch": next_epoch,
        "pieces": [_pack_pieces(_merge(p)) for p in pieces],
        "partial": {"key": _pack(key, delta=True), "head": _pack(head)},
    }
    out["digest"] = _digest(out)
    return out


def _pack_pieces(p: list[tuple[int, int, int, int, int]]) -> dict[str, str]:
    a = np.asarray(p, dtype=np.int64).reshape(-1, 5)
    return {name: _pack(a[:, i]) for i, name in enumerate(("streams", "stream", "epoch", "begin", "end"))}


def _unpack_pieces(d: Mapping[str, Any], s: int) -> np.ndarray:
    cols = [_unpack(d.get(name), f"pieces[{s}].{name}") for name in ("streams", "stream", "epoch", "begin", "end")]
    if len({c.size for c in cols}) != 1:
        raise LoaderError(f"global loader state: pieces[{s}] columns differ in length")
    a = np.stack(cols, axis=1) if cols[0].size else np.zeros((0, 5), np.int64)
    if a.size and ((a[:, 0] < 1).any() or (a[:, 1] >= a[:, 0]).any() or (a[:, 3] >= a[:, 4]).any()):
        raise LoaderError(f"global loader state: pieces[{s}] has an impossible entry")
    return a


# ---- dealing ---------------------------------------------------------------------------
def _mix64(z: int) -> int:
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return z ^ (z >> 31)


def _cut(a: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """Rows of pieces ``a`` covering their concatenated positions [lo, hi), cut at the ends."""
    if hi <= lo or not a.size:
        return np.zeros((0, 5), np.int64)
    sizes = a[:, 4] - a[:, 3]
    ends = np.cumsum(sizes)
    starts = ends - sizes
    take = (ends > lo) & (starts < hi)
    out = a[take].copy()
    st, en = starts[take], ends[take]
    out[:, 3] += np.maximum(0, lo - st)
    out[:, 4] -= np.maximum(0, en - hi)
    return out


class Decoded:
    """The arrays of a verified global state, decoded once (dealing is then cheap per stream)."""

    def __init__(self, state: Mapping[str, Any]):
        self.state = state
        ns = len(state["sources"])
        docs = np.asarray(state["docs"], dtype=np.int64)
        if len(state["units"]) != ns or sum(state["units"]) != docs.size:
            raise LoaderError("global loader state: units and docs do not add up")
        self.unit_start = np.concatenate([[0], np.cumsum(docs)])
        unit_source = np.repeat(np.arange(ns), state["units"])
        key = _unpack(state["partial"].get("key"), "partial.key")
        head = _unpack(state["partial"].get("head"), "partial.head")
        if key.size != head.size:
            raise LoaderError("global loader state: partial.key and partial.head differ in length")
        if key.size and (key[-1] >= self.unit_start[-1] or (np.diff(key) < 0).any()):
            raise LoaderError("global loader state: partly read documents out of range or out of order")
        self.vids = np.searchsorted(self.unit_start, key, side="right") - 1
        self.doc = key - self.unit_start[self.vids] if key.size else key
        self.head = head
        src = unit_source[self.vids] if key.size else np.zeros(0, np.int64)
        self.partial_idx = [np.flatnonzero(src == s) for s in range(ns)]
        if len(state["pieces"]) != ns:
            raise LoaderError("global loader state: pieces do not match the sources")
        self.pieces = [_unpack_pieces(state["pieces"][s], s) for s in range(ns)]
        self.piece_docs = [int((a[:, 4] - a[:, 3]).sum()) if a.size else 0 for a in self.pieces]

    def share(self, streams: int, stream: int) -> dict[str, Any]:
        """Stream ``stream`` of ``streams``'s share (a pure function of the state and these two).

        Per source, the pieces' documents (in order) and the partly read documents (in
        key order) are split into ``streams`` contiguous runs of equal count.
        """
        out: dict[str, Any] = {"pieces": [], "partial": [], "partial_range": []}
        for s, a in enumerate(self.pieces):
            total = self.piece_docs[s]
            out["pieces"].append(_cut(a, stream * total // streams, (stream + 1) * total // streams))
            idx = self.partial_idx[s]
            lo, hi = stream * idx.size // streams, (stream + 1) * idx.size // streams
            sel = idx[lo:hi]
            out["partial"].append((self.vids[sel], self.doc[sel], self.head[sel]))
            out["partial_range"].append((lo, hi))
        em = np.asarray(self.state["emitted"], dtype=np.int64)
        out["emitted"] = (em // streams + (stream < em % streams)).tolist()
        out["rng"] = _mix64((_mix64(int(self.state["seed"]) ^ 0x454C415354494321) + stream * 0x9E3779B97F4A7C15
                             + _mix64(int(self.state["tokens"]) ^ (streams << 32))) & _M64)
        return out


def core_state(state: Mapping[str, Any], share: Mapping[str, Any], epochs: int | None, version: int) -> dict[str, Any]:
    """The compiled core's state for a stream that starts on its share (no pool yet)."""
    ns = len(state["sources"])
    pv, pd, ph, pc = [], [], [], []
    for vids, doc, head in share["partial"]:
        pv.extend(int(x) for x in vids)
        pd.extend(int(x) for x in doc)
        ph.extend(int(x) for x in head)
        pc.append(int(len(vids)))
    rows = share["pieces"]
    own_epoch = [int(epochs) if epochs is not None else int(e) for e in state["next_epoch"]]
    return {
        "version": version, "rng": int(share["rng"]), "phase": -1, "batches": 0, "refilling": True,
        "slot_index": [], "slot_source": [], "slot_view": [], "slot_doc": [], "slot_head": [],
        "epoch": own_epoch, "cursor": [0] * ns, "exhausted": [0] * ns, "epoch_tokens": [0] * ns,
        "emitted": list(share["emitted"]),
        "partial_count": pc, "partial_view": pv, "partial_doc": pd, "partial_head": ph,
        "carry_count": [int(len(r)) for r in rows],
        "carry_streams": [int(x) for r in rows for x in r[:, 0]],
        "carry_stream": [int(x) for r in rows for x in r[:, 1]],
        "carry_epoch": [int(x) for r in rows for x in r[:, 2]],
        "carry_begin": [int(x) for r in rows for x in r[:, 3]],
        "carry_end": [int(x) for r in rows for x in r[:, 4]],
    }


# ---- files -----------------------------------------------------------------------------
def save_state(state: Mapping[str, Any], path: str | os.PathLike) -> None:
    """Write a (global or per-stream) state as JSON, atomically (temporary file + rename)."""
    atomic_write(os.fspath(path), json.dumps(state, separators=(",", ":")))


def load_state(path: str | os.PathLike) -> dict[str, Any]:
    """Read a state file; a truncated or edited global state raises LoaderError naming the file."""
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            state = json.load(f)
    except FileNotFoundError:
        raise LoaderError(f"{path}: state file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise LoaderError(f"{path}: not a complete JSON state (truncated?): {exc}") from None
    if is_global_state(state):
        try:
            verify_global(state)
        except LoaderError as exc:
            raise LoaderError(f"{path}: {exc}") from None
    return state


def remaining_documents(state: Mapping[str, Any], loader: Any) -> dict[tuple[str, int], int]:
    """Every document a global state still has to emit: ``(source, doc index) -> read head``.

    Unstarted documents have head 0. For audits and tests: it lists documents, so it is
    O(remaining documents); ``loader`` is any loader over the same corpus (it lays the
    pieces out). In finite mode a document can be listed once per remaining pass; the
    count of passes is not shown here.
    """
    verify_global(state)
    dec = Decoded(state)
    out: dict[tuple[str, int], int] = {}
    for s, name in enumerate(state["sources"]):
        for row in dec.pieces[s]:
            for gid in loader._core.piece_docs(s, *(int(x) for x in row)):
                out[(name, int(gid))] = 0
        idx = dec.partial_idx[s]
        for vid, doc, head in zip(dec.vids[idx], dec.doc[idx], dec.head[idx]):
            out[(name, int(loader._units[int(vid)].doc_base + doc))] = int(head)
    return out


def state_summary(state: Mapping[str, Any]) -> dict[str, Any]:
    """What a verified global state holds: tokens, step, pieces, carried documents and bytes per source."""
    verify_global(state)
    ns = len(state["sources"])
    key = _unpack(state["partial"]["key"], "partial.key")
    unit_start = np.concatenate([[0], np.cumsum(np.asarray(state["docs"], dtype=np.int64))])
    src = np.repeat(np.arange(ns), state["units"])[np.searchsorted(unit_start, key, side="right") - 1] \
        if key.size else np.zeros(0, np.int64)
    per = {}
    for s, name in enumerate(state["sources"]):
        a = _unpack_pieces(state["pieces"][s], s)
        per[name] = {"pieces": int(a.shape[0]), "unstarted_docs": int((a[:, 4] - a[:, 3]).sum()) if a.size else 0,
                     "partly_read_docs": int((src == s).sum())}
    return {"tokens": state["tokens"], "step": state["step"], "gathered_from": state.get("gathered_from"),
            "sources": per, "bytes": len(json.dumps(state, separators=(",", ":")))}
