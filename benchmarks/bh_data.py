"""Data for the batch-heterogeneity experiment: byte-level token shards and fixed eval rows.

Until a trained tokenizer is used (``--tokens DIR``), documents of the demo corpus
are turned into tokens as their UTF-8 bytes (vocabulary 256). One shard folder is
written per corpus ``source`` (web-docs, fiction-ish, code-go, ...), so the
loader mixes real domains; every 25th document is held out for evaluation.

The eval rows are built here, independent of either loader, so both runs are
scored on exactly the same tokens: one window of ``seq_len + 1`` tokens from each
of many held-out documents (seeded offsets), positions 0..L, one document per row.
"""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import numpy as np

log = logging.getLogger("bh_data")

HOLDOUT_EVERY = 25  # every 25th corpus document is held out for eval (4%)
BYTES_VERSION = "bytes-v1"


def read_corpus(path: Path) -> list[dict]:
    import zstandard

    with open(path, "rb") as fh:
        reader = zstandard.ZstdDecompressor().stream_reader(fh)
        docs = []
        for lineno, line in enumerate(io.TextIOWrapper(reader, encoding="utf-8"), 1):
            try:
                docs.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise SystemExit(f"{path}:{lineno}: not JSON ({exc.msg})") from None
    return docs


def byte_tokens(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.uint32)


def prepare_byte_shards(corpus: Path, data_dir: Path) -> tuple[dict[str, str], list[np.ndarray]]:
    """Write (once) byte-level shards per source; return (source -> shard dir, held-out docs)."""
    import rsdb

    root = data_dir / BYTES_VERSION
    docs = read_corpus(corpus)
    train: dict[str, list[tuple[str, np.ndarray]]] = {}
    held_out: list[np.ndarray] = []
    for i, d in enumerate(docs):
        toks = byte_tokens(d["text"])
        if toks.size == 0:
            continue
        if i % HOLDOUT_EVERY == 0:
            held_out.append(toks)
        else:
            train.setdefault(d.get("source") or "default", []).append((str(d.get("id", i)), toks))
    sources = {}
    for src, items in sorted(train.items()):
        out = root / "train" / src
        sources[src] = str(out)
        if (out / "manifest.json").exists():
            continue
        log.info("writing byte-level shards for %s (%d docs) to %s", src, len(items), out)
        rsdb.write_shards(out, [t for _, t in items], source=src, doc_ids=[i for i, _ in items],
                          tokenizer="bytes", vocab_size=256)
    return sources, held_out


def shard_sources(tokens_dir: Path) -> dict[str, str]:
    """``DIR`` with a manifest.json is one source; otherwise each subfolder with one is a source."""
    if (tokens_dir / "manifest.json").exists():
        return {tokens_dir.name: str(tokens_dir)}
    found = {p.parent.name: str(p.parent) for p in sorted(tokens_dir.glob("*/manifest.json"))}
    if not found:
        raise SystemExit(f"{tokens_dir}: no manifest.json in it or in its subfolders (not RSDB token shards)")
    return found


def vocab_size_of(sources: dict[str, str]) -> int:
    sizes = set()
    for d in sources.values():
        v = json.loads((Path(d) / "manifest.json").read_text()).get("vocab_size")
        if v is None:
            raise SystemExit(f"{d}/manifest.json: vocab_size is null; the experiment needs it to size the model")
        sizes.add(int(v))
    return max(sizes)


def docs_from_shards(shard_dir: Path, limit: int) -> list[np.ndarray]:
    """Up to ``limit`` documents (token arrays) of one shard folder."""
    import rsdb

    out: list[np.ndarray] = []
    for doc in rsdb.open_shards(shard_dir):
        out.append(np.asarray(doc, dtype=np.uint32))
        if len(out) >= limit:
            break
    return out


def eval_batches(docs: list[np.ndarray], *, rows: int, seq_len: int, batch_size: int, seed: int) -> list[dict]:
    """Fixed eval batches in the RSDB batch format: one window of one document per row."""
    rng = np.random.default_rng(seed)
    eligible = [d for d in docs if d.size >= seq_len + 1]
    if not eligible:
        raise SystemExit(f"no eval document has {seq_len + 1} tokens; lower --seq-len")
    order = rng.permutation(len(eligible))
    L1 = seq_len + 1
    toks = np.zeros((rows, L1), np.int32)
    doc_ids = np.zeros((rows, L1), np.int64)
    for r in range(rows):
        d = eligible[order[r % len(eligible)]]
        off = int(rng.integers(0, d.size - L1 + 1))
        toks[r] = d[off: off + L1]
        doc_ids[r] = r
    pos = np.tile(np.arange(L1, dtype=np.int32), (rows, 1))
    batches = []
    for s in range(0, rows, batch_size):
        sl = slice(s, s + batch_size)
        n = toks[sl].shape[0]
        batches.append({
            "tokens": toks[sl],
            "loss_mask": np.ones((n, L1), bool),
            "position_ids": pos[sl],
            "doc_ids": doc_ids[sl],
            "source_ids": np.zeros((n, L1), np.int32),
        })
    return batches
