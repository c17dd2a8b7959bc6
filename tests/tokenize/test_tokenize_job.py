"""The tokenize job end to end on a local Ray cluster: curated Parquet -> RSDB token shards."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import rsdb
import tokenizer
from rsdb.errors import ConfigError
from tokenizer.tokenize_job import TokenizeConfig, tokenize_to_shards

TEXTS = {
    "web": ["The price is 1234567!", "Hello world, hello tokens.", "Привет, мир! 東京2024年"],
    "code": ["def f(x):\n    return x + 1\n", "for i in range(10):\n    print(i)\n"],
}


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("tok")
    corpus = [t for ts in TEXTS.values() for t in ts] * 20
    cfg = tokenizer.TrainConfig(inputs=["-"], vocab_size=2600, min_frequency=1)
    tokenizer.train(cfg, texts=corpus, out_dir=out)
    return out


@pytest.fixture()
def curated(tmp_path):
    d = tmp_path / "curated"
    d.mkdir()
    rows = [{"id": f"{s}-{i}", "text": t, "lang": "en" if s == "web" else "zxx", "source": s}
            for s, ts in TEXTS.items() for i, t in enumerate(ts)]
    pq.write_table(pa.Table.from_pylist(rows[:3]), d / "part-0.parquet")
    bad = rows[3:] + [{"id": "empty", "text": "", "lang": "en", "source": "web"},
                      {"id": "null", "text": None, "lang": "en", "source": "web"}]
    pq.write_table(pa.Table.from_pylist(bad), d / "part-1.parquet")
    return d


@pytest.mark.parametrize("fast", [True, False], ids=["tiktoken-twin", "tokenizers"])
def test_tokenize_job_writes_rsdb_shards(ray_cluster, tok_dir, curated, tmp_path, fast):
    out = tmp_path / "tokens"
    cfg = TokenizeConfig(tokenizer=str(tok_dir), inputs=[str(curated)], output=str(out), source_field="source",
                         fast=fast)
    summary = tokenize_to_shards(cfg)
    tok = tokenizer.load(tok_dir)
    assert summary.rows == 7 and summary.rejected == 2
    assert summary.docs_per_source == {"web": 3, "code": 2}
    for src, texts in TEXTS.items():
        shards = rsdb.open_shards(out / src)
        assert shards.num_docs == len(texts)
        manifest = json.loads((out / src / "manifest.json").read_text())
        assert manifest["num_tokens"] == summary.tokens_per_source[src] == sum(len(shards[i]) for i in range(len(texts)))
        assert manifest["vocab_size"] == tok.get_vocab_size()
        got = {shards.view(0).doc_ids()[0]}
        assert got
        for i, text in enumerate(texts):
            ids = shards[i].tolist()
            assert ids[0] == tokenizer.bos_id(tok) and ids[-1] == tokenizer.eos_id(tok)
            assert tok.decode(ids[1:-1]) == text
            assert ids[1:-1] == tok.encode(text, add_special_tokens=False).ids
    rejected = pq.read_table(out / "rejected").to_pylist()
    assert sorted(r["reject_reason"] for r in rejected) == ["text_empty", "text_missing"]
    assert all(r["file"].endswith("part-1.parquet") for r in rejected)
    langs = json.loads((out / "summary.json").read_text())["tokens_per_lang"]
    assert set(langs) == {"en", "zxx"}


def test_tokenize_job_resumes_and_is_identical(ray_cluster, tok_dir, curated, tmp_path):
    out = tmp_path / "tokens"
    cfg = TokenizeConfig(tokenizer=str(tok_dir), inputs=[str(curated)], output=str(out), source="all")
    first = tokenize_to_shards(cfg)
    manifest_before = (out / "all" / "manifest.json").read_text()
    # Simulate a kill after unit 0: drop unit 1's marker and its output, rerun.
    markers = sorted((out / "_units").glob("u*.json"))
    assert len(markers) == 2
    markers[1].unlink()
    second = tokenize_to_shards(cfg)
    assert second.units_skipped == 1
    assert (out / "all" / "manifest.json").read_text() == manifest_before
    assert second.tokens == first.tokens
    loader_tokens = np.concatenate([rsdb.open_shards(out / "all")[i] for i in range(5)])
    assert loader_tokens.size == first.tokens
    # A torn marker (not what an atomic write leaves, but a damaged disk can) means: redo that unit.
    markers[0].write_text(markers[0].read_text()[:20])
    third = tokenize_to_shards(cfg)
    assert third.units_skipped == 1 and (out / "all" / "manifest.json").read_text() == manifest_before


def test_a_folder_of_the_earlier_run_record_resumes(ray_cluster, tok_dir, curated, tmp_path):
    """``_units/run.json`` was ``{"fingerprint", "tokenizer"}`` before the typed record; same fingerprint rule."""
    import hashlib

    out = tmp_path / "tokens"
    cfg = TokenizeConfig(tokenizer=str(tok_dir), inputs=[str(curated)], output=str(out), source="all")
    tokenize_to_shards(cfg)
    earlier = {"source": "all", "source_field": None, "text_field": "text", "id_field": "id", "lang_field": "lang",
               "add_bos": True, "add_eos": True, "shard_tokens": 1 << 26, "max_doc_tokens": None, "format": "rsdb",
               "unit_rows": 20_000}  # the earlier TokenizeSpec's fields and defaults
    h = hashlib.sha256((tok_dir / "tokenizer.json").read_bytes())  # the earlier code's fingerprint, spelled out
    h.update(json.dumps(earlier, sort_keys=True).encode())
    run = out / "_units" / "run.json"
    run.write_text(json.dumps({"fingerprint": h.hexdigest()[:16], "tokenizer": str(tok_dir)}))
    assert tokenize_to_shards(cfg).units_skipped == 2
    run.write_text(json.dumps({"fingerprint": "0123456789abcdef", "tokenizer": str(tok_dir)}))
    with pytest.raises(ConfigError, match="fingerprint 0123456789abcdef, now " + h.hexdigest()[:16]):
        tokenize_to_shards(cfg)
    run.write_text("{not json")
    with pytest.raises(ConfigError, match=r"_units/run.json: not JSON"):
        tokenize_to_shards(cfg)
    assert tokenize_to_shards(cfg.model_copy(update={"overwrite": True})).units_skipped == 0


def test_tokenize_rejects_bad_config_before_work(tmp_path):
    from tokenizer.tokenize_job import load_config

    base = {"tokenizer": "x", "inputs": ["a"], "output": str(tmp_path)}
    with pytest.raises(ConfigError, match="not both"):
        load_config({**base, "source": "a", "source_field": "s"})
    assert TokenizeConfig(tokenizer="x", inputs="a", output="file:///t").model_dump(
        include={"inputs", "output", "source_field"}) == {"inputs": ["a"], "output": "/t", "source_field": "source"}
    with pytest.raises(ConfigError, match=r"^k.yaml: output: s3://bucket/tokens must be a local"):
        load_config({**base, "output": "s3://bucket/tokens"}, "k.yaml")
    with pytest.raises(ConfigError, match=r"unit_rows: Input should be greater than 0; workers: .*; knob: Extra"):
        load_config({**base, "unit_rows": 0, "workers": "many", "knob": 1})


def test_inputs_skip_work_state_and_rejected_rows(tmp_path):
    from pipeline.manifest import ManifestError
    from tokenizer.tokenize_job import list_inputs

    d = tmp_path / "curated"
    for rel in ("part-0.parquet", "sub/part-1.parquet", "_work/map0/u0/part.parquet", "rejected/r.parquet",
                ".tmp.parquet", "notes.txt"):
        (d / rel).parent.mkdir(parents=True, exist_ok=True)
        (d / rel).write_bytes(b"x")
    assert [p.split(str(d))[-1] for p in list_inputs(str(d))] == ["/part-0.parquet", "/sub/part-1.parquet"]
    # A curated output's manifest (in its run folder beside it) lists exactly the shards to read.
    shard = {"path": "sub/part-1.parquet", "rows": 1, "bytes": 1, "text_bytes": 1, "sha256": "0" * 64}
    manifest = {"manifest": "trinity-curated", "format_version": 2, "config_hash": "h", "code_version": "0",
                "format": "parquet", "compression": "zstd", "rows": 1, "text_bytes": 1, "bytes": 1,
                "shards": [shard], "schema": [{"name": "text", "type": "string"}],
                "rejected": {"rows": 0, "shards": []}, "input": {"rows": 1, "units": 1, "files": ["a.jsonl"]},
                "stages": [], "accounting": {"ok": True, "problems": [], "rule": "r"}, "write_seconds": 0.1,
                "run": {"config": {}, "versions": {}, "started_at": None, "finished_at": "t"}}
    run = tmp_path / "curated.curation"
    run.mkdir()
    (run / "manifest.json").write_text(json.dumps(manifest))
    assert list_inputs(str(d)) == [f"{d}/sub/part-1.parquet"]
    # A wrong-typed field is refused with its name, never read as another set of shards.
    (run / "manifest.json").write_text(json.dumps(dict(manifest, shards=[dict(shard, rows="1")])))
    with pytest.raises(ManifestError, match=r"shards\[0\]\.rows"):
        list_inputs(str(d))


def test_resume_with_another_tokenizer_is_refused(ray_cluster, tok_dir, curated, tmp_path):
    import shutil

    out = tmp_path / "tokens"
    tokenize_to_shards(TokenizeConfig(tokenizer=str(tok_dir), inputs=[str(curated)], output=str(out), source="all"))
    other = tmp_path / "other-tok"
    shutil.copytree(tok_dir, other)
    data = json.loads((other / "tokenizer.json").read_text())
    data["model"]["vocab"]["zzz-extra"] = max(data["model"]["vocab"].values()) + 1
    (other / "tokenizer.json").write_text(json.dumps(data))
    cfg = TokenizeConfig(tokenizer=str(other), inputs=[str(curated)], output=str(out), source="all")
    with pytest.raises(ConfigError, match=r"tokens holds a tokenize run with other settings \(fingerprint .*"
                                          r"differs in tokenizer .*tokenizer_sha256"):
        tokenize_to_shards(cfg)
    summary = tokenize_to_shards(cfg.model_copy(update={"overwrite": True}))
    assert summary.units_skipped == 0
