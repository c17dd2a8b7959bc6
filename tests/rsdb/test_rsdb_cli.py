"""`trinity-data rsdb write-jsonl | inspect | stream` on real JSONL (inline and the demo corpus).

Run: ``.venv/bin/python -m pytest tests/rsdb/test_rsdb_cli.py -q``
"""

from __future__ import annotations

import json

import numpy as np
import zstandard
from typer.testing import CliRunner

import rsdb
from jobs.cli import app

runner = CliRunner()


def _jsonl_zst(path, rows, extra_lines=()):
    text = "\n".join([json.dumps(r) for r in rows] + list(extra_lines)) + "\n"
    path.write_bytes(zstandard.ZstdCompressor().compress(text.encode()))


def test_write_inspect_stream(tmp_path):
    rows = [{"id": f"d{i}", "text": ("héllo wörld " * (i + 1)), "source": "web" if i % 3 else "code", "lang": "en"}
            for i in range(30)]
    rows.append({"id": "empty", "text": "", "source": "web"})
    _jsonl_zst(tmp_path / "c.jsonl.zst", rows, extra_lines=["{not json"])
    out = tmp_path / "bytes"
    r = runner.invoke(app, ["rsdb", "write-jsonl", str(tmp_path / "c.jsonl.zst"), "--out", str(out),
                            "--source-field", "source"])
    assert r.exit_code == 0, r.output
    assert "rejected 2" in r.output
    reasons = [json.loads(x)["reason"] for x in (out / "_rejected.jsonl").read_text().splitlines()]
    assert any(x.startswith("bad_json") for x in reasons) and any(x.startswith("no_text") for x in reasons)
    web = rsdb.open_shards(out / "web", verify=True)
    assert web.vocab_size == 258 and web.tokenizer == "bytes" and web.num_docs == 20
    doc = web[0]
    assert doc[0] == 256 and doc[-1] == 257
    assert bytes(np.asarray(doc[1:-1], np.uint8)).decode() == rows[1]["text"]
    assert web.view(0).column("lang")[0] == "en"

    r = runner.invoke(app, ["rsdb", "inspect", str(out / "web"), "--verify"])
    assert r.exit_code == 0 and "valid" in r.output, r.output

    phases = json.dumps([{"tokens": 2000, "weights": {"web": 1, "code": 1}, "name": "p1"},
                         {"tokens": 10**6, "weights": {"code": 1}, "name": "p2"}])
    summary = tmp_path / "s.json"
    r = runner.invoke(app, ["rsdb", "stream", *[str(p) for p in sorted(out.iterdir())], "--seq-len", "64",
                            "--batch-size", "4", "--steps", "20", "--buffer-docs", "4", "--phases-json", phases,
                            "--json", str(summary)])
    assert r.exit_code == 0, r.output
    assert "skipping" in r.output and "_rejected.jsonl" in r.output
    s = json.loads(summary.read_text())
    assert s["batches"] == 20 and s["tokens_per_s"] > 0 and s["docs_per_sequence"] >= 1
    assert [row["phase"] for row in s["phases"][0]] == ["p1", "p1"]

    # A corrupt shard: inspect exits 1 and names the file.
    shard = out / "code" / "shard-00000.arrow"
    shard.write_bytes(shard.read_bytes()[:-10])
    r = runner.invoke(app, ["rsdb", "inspect", str(out / "code")])
    assert r.exit_code == 1 and "shard-00000.arrow" in r.output and "truncated" in r.output


def test_demo_corpus_slice(tmp_path, demo_corpus):
    out = tmp_path / "bytes"
    r = runner.invoke(app, ["rsdb", "write-jsonl", str(demo_corpus), "--out", str(out), "--source-field", "source",
                            "--limit", "300"])
    assert r.exit_code == 0, r.output
    names = {json.loads((d / "manifest.json").read_text())["source"] for d in out.iterdir() if d.is_dir()}
    assert len(names) >= 2
    r = runner.invoke(app, ["rsdb", "stream", str(out), "--seq-len", "1024", "--batch-size", "4", "--steps", "10",
                            "--buffer-docs", "16"])
    assert r.exit_code == 0 and "tokens/s" in r.output, r.output
