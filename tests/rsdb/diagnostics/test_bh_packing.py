"""Loader statistics on the real RSDB loader: RSDB mixes documents within a microbatch, sequential does not."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import rsdb
from rsdb.diagnostics import LoaderStats


@pytest.fixture(scope="module")
def long_doc_corpus(tmp_path_factory):
    """Two sources of long documents (1,500-4,000 tokens) against 65-token rows."""
    root = tmp_path_factory.mktemp("longdocs")
    rng = np.random.default_rng(0)
    sources = {}
    for s, name in enumerate(("web", "code")):
        docs = [rng.integers(s * 100, s * 100 + 100, int(rng.integers(1500, 4000))).astype(np.uint32)
                for _ in range(20)]
        rsdb.write_shards(root / name, docs, source=name, vocab_size=256)
        sources[name] = str(root / name)
    return sources


def _stats(sources, packing, steps=10):
    loader = rsdb.RSDBLoader(sources, seq_len=64, batch_size=4, buffer_docs=16, seed=3, packing=packing)
    return LoaderStats(micro_per_step=2, source_names=loader.source_names).collect(loader, steps)


def test_rsdb_has_more_documents_per_microbatch(long_doc_corpus):
    seq = _stats(long_doc_corpus, "sequential").summary()
    rs = _stats(long_doc_corpus, "rsdb").summary()
    assert seq["microbatches"] == rs["microbatches"] == 20
    # Sequential: a 1,500+ token document fills ~25 consecutive rows, so a 4-row microbatch
    # is (almost always) one document of one source.
    assert seq["distinct_docs"]["mean"] <= 1.5
    assert seq["max_doc_share"]["mean"] >= 0.9
    assert seq["dominated_frac"] >= 0.9
    # RSDB: each row comes from a random document of a 16-document buffer.
    assert rs["distinct_docs"]["mean"] >= 2.5
    assert rs["distinct_docs"]["mean"] > 2 * seq["distinct_docs"]["mean"]
    assert rs["max_doc_share"]["mean"] < seq["max_doc_share"]["mean"] - 0.3
    assert rs["source_entropy"]["mean"] > seq["source_entropy"]["mean"]
    # Both see the same token volume, from both sources.
    assert seq["tokens"] == rs["tokens"] == 20 * 4 * 64
    assert set(rs["source_shares"]) == {"web", "code"}


def test_diagnose_loader_cli(long_doc_corpus, tmp_path):
    from typer.testing import CliRunner

    from jobs.cli import app
    from rsdb.diagnostics.plots import describe_png

    res = CliRunner().invoke(app, ["diagnose", "loader", *long_doc_corpus.values(), "--steps", "5",
                                   "--micro-batches", "2", "--batch-size", "4", "--seq-len", "64",
                                   "--buffer-docs", "16", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "distinct documents" in res.output and "rsdb" in res.output and "sequential" in res.output
    assert describe_png(tmp_path / "loader_stats.png")["width"] > 800
    data = json.loads((tmp_path / "loader_stats.json").read_text())
    assert set(data["summaries"]) == {"sequential", "rsdb"}
    assert data["summaries"]["rsdb"]["distinct_docs"]["mean"] > data["summaries"]["sequential"]["distinct_docs"]["mean"]


def test_diagnose_loader_names_sources_and_rejects_duplicates(long_doc_corpus, tmp_path):
    from typer.testing import CliRunner

    from jobs.cli import app

    web = long_doc_corpus["web"]
    res = CliRunner().invoke(app, ["diagnose", "loader", f"a={web}", f"a={web}", "--steps", "1"])
    assert res.exit_code == 2 and "two sources are named 'a'" in res.output
    # a parent folder expands into one source per shard subfolder
    res = CliRunner().invoke(app, ["diagnose", "loader", str(Path(web).parent), "--steps", "2",
                                   "--micro-batches", "1", "--batch-size", "2", "--seq-len", "32",
                                   "--packing", "rsdb", "--out", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    assert "2 sources" in res.output
