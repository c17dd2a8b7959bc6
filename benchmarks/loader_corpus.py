"""The synthetic corpus of the loader benchmark, and its conversions for peer loaders.

One corpus, three sources with different heavy-tailed document lengths (lognormal
bodies plus a few documents of 100k+ tokens in every source), uniform random token
ids below a 200k vocabulary (the Trinity tokenizer's size, so tokens need 32 bits).
Token values do not matter to a loader; lengths do, because they decide how many
chunks a sequence is cut into.

Everything is cached under ``out/bench/`` keyed by size and seed, so repeated runs
only pay for the conversion once:

* ``corpus-<tokens>-s<seed>/rsdb/<source>/``      RSDB token shards (``rsdb.write_shards``)
* ``corpus-<tokens>-s<seed>/megatron/<source>``   the same documents as Megatron .bin/.idx
* ``corpus-<tokens>-s<seed>/litdata-<L+1>/``       litdata ``optimize`` output (TokensLoader)
* ``corpus-<tokens>-s<seed>/mds-<L+1>/``           mosaicml-streaming MDS shards
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import zlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

VOCAB = 200_000
CORPUS_VERSION = 1  # bump when the generator changes, to invalidate caches


@dataclass(frozen=True)
class SourceSpec:
    name: str
    share: float  # fraction of all tokens
    mu: float  # lognormal log-mean of document lengths
    sigma: float  # lognormal log-std
    long_share: float = 0.05  # fraction of this source's tokens in 100k+ token documents


@dataclass(frozen=True)
class CorpusSpec:
    tokens: int
    seed: int = 0
    sources: tuple[SourceSpec, ...] = field(
        default_factory=lambda: (
            # medians ~550, ~900, ~1100 tokens; means ~1.1k, ~2.8k, ~1.8k
            SourceSpec("web", 0.6, mu=6.3, sigma=1.2),
            SourceSpec("code", 0.25, mu=6.8, sigma=1.5),
            SourceSpec("math", 0.15, mu=7.0, sigma=1.0),
        )
    )

    @property
    def key(self) -> str:
        return f"corpus-{self.tokens}-s{self.seed}-v{CORPUS_VERSION}"


def _stable(name: str) -> int:
    """A per-source seed that does not change between processes (unlike hash())."""
    return zlib.crc32(name.encode())


def doc_lengths(spec: CorpusSpec, src: SourceSpec) -> np.ndarray:
    """Document lengths of one source: a lognormal body plus 100k-400k token documents."""
    rng = np.random.default_rng([spec.seed, _stable(src.name), CORPUS_VERSION])
    budget = int(spec.tokens * src.share)
    long_budget = int(budget * src.long_share)
    longs = []
    while sum(longs) < long_budget or not longs:  # at least one 100k+ document
        longs.append(int(rng.integers(100_000, 400_001)))
    body_budget = max(budget - sum(longs), 0)
    mean = float(np.exp(src.mu + src.sigma**2 / 2))
    body = np.maximum(1, rng.lognormal(src.mu, src.sigma, size=int(body_budget / mean * 1.2) + 16)).astype(np.int64)
    cut = int(np.searchsorted(np.cumsum(body), body_budget)) + 1
    lengths = np.concatenate([body[:cut], np.asarray(longs, np.int64)])
    rng.shuffle(lengths)
    return lengths


def iter_docs(spec: CorpusSpec, src: SourceSpec, block_tokens: int = 1 << 24) -> Iterator[np.ndarray]:
    """Yield the documents of one source (uint32 arrays), generated in large blocks."""
    lengths = doc_lengths(spec, src)
    rng = np.random.default_rng([spec.seed, 7, _stable(src.name)])
    i = 0
    while i < len(lengths):
        j = i
        total = 0
        while j < len(lengths) and (total == 0 or total + lengths[j] <= block_tokens):
            total += int(lengths[j])
            j += 1
        block = rng.integers(0, VOCAB, size=total, dtype=np.uint32)
        bounds = np.concatenate([[0], np.cumsum(lengths[i:j])])
        for a, b in zip(bounds[:-1], bounds[1:]):
            yield block[a:b]
        i = j


def _progress(spec: CorpusSpec, src: SourceSpec, what: str) -> Iterator[np.ndarray]:
    """iter_docs with a tqdm bar on stderr (corpus builds take a while at 200M tokens)."""
    from tqdm import tqdm

    n = len(doc_lengths(spec, src))
    yield from tqdm(iter_docs(spec, src), total=n, desc=f"{what} {src.name}", unit="doc", leave=False)


def _done(path: Path) -> dict | None:
    f = path / "DONE.json"
    return json.loads(f.read_text()) if f.exists() else None


def _mark(path: Path, info: dict) -> None:
    (path / "DONE.json").write_text(json.dumps(info, indent=1))


def _build_per_source(spec: CorpusSpec, root: Path, kind: str, write_source) -> dict:
    """Write the corpus into ``root/<key>/<kind>/<source>`` with ``write_source(path, docs, source)``
    (which returns a manifest with ``num_docs``/``num_tokens``); cached by a DONE.json marker."""
    out = root / spec.key / kind
    if info := _done(out):
        return info
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    t0 = time.perf_counter()
    stats = {}
    for src in spec.sources:
        m = write_source(out / src.name, _progress(spec, src, kind), src)
        stats[src.name] = {"num_docs": m["num_docs"], "num_tokens": m["num_tokens"]}
    info = {"spec": _spec_json(spec), "sources": stats, "build_s": time.perf_counter() - t0,
            "paths": {s.name: str(out / s.name) for s in spec.sources}}
    _mark(out, info)
    return info


def build_rsdb(spec: CorpusSpec, root: Path) -> dict:
    """Write the corpus as RSDB token shards, one directory per source (cached)."""
    import rsdb

    def write(path, docs, src):
        return rsdb.write_shards(path, docs, source=src.name, shard_tokens=1 << 26,
                                 tokenizer="synthetic-uniform", vocab_size=VOCAB)

    return _build_per_source(spec, root, "rsdb", write)


def build_megatron(spec: CorpusSpec, root: Path) -> dict:
    """Write the corpus as one Megatron int32 .bin/.idx pair per source (cached)."""
    from rsdb.megatron import write_megatron

    return _build_per_source(spec, root, "megatron", lambda path, docs, src: write_megatron(path, docs, dtype=np.int32))


def _spec_json(spec: CorpusSpec) -> dict:
    d = asdict(spec)
    d["version"] = CORPUS_VERSION
    return d


# ---------------------------------------------------------------- peer conversions
# Both peers get what their documentation recommends for LLM pretraining: documents
# concatenated into one token stream and served as fixed blocks of seq_len + 1 tokens
# (litdata: TokensLoader; mosaicml-streaming: llm-foundry's "concat_tokens" MDS layout).


def _litdata_fn(item):
    """litdata worker: one input (source, first doc, last doc) -> its documents as tensors."""
    import torch

    spec_json, src_name, lo, hi = item
    spec = _spec_from_json(spec_json)
    src = next(s for s in spec.sources if s.name == src_name)
    for k, doc in enumerate(iter_docs(spec, src)):
        if k >= hi:
            break
        if k >= lo:
            yield torch.from_numpy(doc.astype(np.int32))


def _spec_from_json(d: dict) -> CorpusSpec:
    return CorpusSpec(tokens=d["tokens"], seed=d["seed"], sources=tuple(SourceSpec(**s) for s in d["sources"]))


def build_litdata(spec: CorpusSpec, root: Path, block: int) -> dict:
    """Convert the corpus with ``litdata.optimize`` + ``TokensLoader`` (cached)."""
    import litdata
    from litdata.streaming.item_loader import TokensLoader

    out = root / spec.key / f"litdata-{block}"
    if info := _done(out):
        return info
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    inputs = []
    for src in spec.sources:
        n = len(doc_lengths(spec, src))
        # one input per source; iter_docs regenerates deterministically
        inputs.append((_spec_json(spec), src.name, 0, n))
    litdata.optimize(
        fn=_litdata_fn,
        inputs=inputs,
        output_dir=str(out),
        chunk_size=block * 1024,  # 1024 blocks per chunk (~32 MiB of int32 at 8193)
        item_loader=TokensLoader(),
        num_workers=1,
        mode="overwrite",
        verbose=False,
    )
    info = {"spec": _spec_json(spec), "build_s": time.perf_counter() - t0, "path": str(out)}
    _mark(out, info)
    return info


def build_mds(spec: CorpusSpec, root: Path, block: int) -> dict:
    """Convert the corpus to MDS: concatenated tokens cut into ``block``-token samples."""
    streaming = import_streaming()

    out = root / spec.key / f"mds-{block}"
    if info := _done(out):
        return info
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    buf = np.empty(0, np.int32)
    n = 0
    with streaming.MDSWriter(out=str(out), columns={"tokens": "bytes"}, compression=None,
                             size_limit=1 << 26) as w:
        for src in spec.sources:
            for doc in _progress(spec, src, "mds"):
                buf = np.concatenate([buf, doc.astype(np.int32)])
                while len(buf) >= block:
                    w.write({"tokens": buf[:block].tobytes()})
                    buf = buf[block:]
                    n += 1
    info = {"spec": _spec_json(spec), "build_s": time.perf_counter() - t0, "path": str(out), "samples": n}
    _mark(out, info)
    return info


def import_streaming():
    """Import mosaicml-streaming's core without its vision/multimodal subpackages.

    ``import streaming`` imports ``streaming.vision``, which needs a torchvision built
    for the installed torch; the CPU torch here has none that loads, and the benchmark
    only uses the format and dataset classes in ``streaming.base``.
    """
    import importlib.util
    import sys

    if "streaming" not in sys.modules:
        spec = importlib.util.find_spec("streaming")
        if spec is None:
            raise ImportError("mosaicml-streaming is not installed (pip install 'trinity-data[bench]')")
        pkg = importlib.util.module_from_spec(spec)  # package object, __init__ not run
        sys.modules["streaming"] = pkg
    import streaming.base as base

    return base


def default_root() -> Path:
    return Path(os.environ.get("TRINITY_BENCH_DIR", "out/bench"))
