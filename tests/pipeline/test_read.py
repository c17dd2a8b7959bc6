"""Readers: every format, ids generated when absent, bad records rejected with file and line.

Run: .venv/bin/python -m pytest tests/pipeline/test_read.py -q
"""

from __future__ import annotations

import gzip
import json

import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest
import zstandard

from pipeline.config import InputConfig, parse_config
from pipeline.errors import ConfigError
from pipeline.read import plan_units

from pipeline_testutil import read_all


def test_bad_records_are_rejected_with_file_and_line(tmp_path, corpus_rows, jsonl_writer):
    path = jsonl_writer(tmp_path / "docs.jsonl", corpus_rows[:10])
    kept, rejected = read_all(InputConfig(paths=[str(path)], unit_rows=4))
    assert kept.num_rows == 10
    got = {r["source_line"]: r["reject_reason"] for r in rejected.to_pylist()}
    assert set(got) == {3, 5, 7}
    assert got[3].startswith("malformed_json")
    assert got[5].startswith("invalid_utf8: byte 0xe9")
    assert got[7] == "missing_field: 'text'"
    assert set(rejected.column("source_file").to_pylist()) == {str(path)}
    assert set(rejected.column("reject_stage").to_pylist()) == {"read"}


@pytest.mark.parametrize("suffix, opener", [(".jsonl.gz", gzip.open), (".jsonl.zst", None), (".jsonl.zstd", None)])
def test_compressed_jsonl(tmp_path, corpus_rows, suffix, opener):
    raw = b"".join(json.dumps(r).encode() + b"\n" for r in corpus_rows[:5])
    path = tmp_path / f"docs{suffix}"
    path.write_bytes(gzip.compress(raw) if opener else zstandard.ZstdCompressor().compress(raw))
    kept, rejected = read_all(InputConfig(paths=[str(path)]))
    assert kept.column("id").to_pylist() == [r["id"] for r in corpus_rows[:5]]
    assert rejected.num_rows == 0


def test_parquet_arrow_text_and_generated_ids(tmp_path, corpus_rows):
    table = pa.table({"body": [r["text"] for r in corpus_rows[:6]], "n": list(range(6))})
    pq.write_table(table, tmp_path / "a.parquet", row_group_size=2)
    feather.write_feather(table, tmp_path / "b.arrow")
    (tmp_path / "txt").mkdir()
    for i in range(3):
        (tmp_path / "txt" / f"{i}.txt").write_text(corpus_rows[i]["text"])
    cfg = InputConfig(paths=[str(tmp_path / "a.parquet"), str(tmp_path / "b.arrow"), str(tmp_path / "txt")],
                      text_field="body", id_field=None, unit_rows=4)
    kept, rejected = read_all(cfg)
    assert kept.num_rows == 15 and rejected.num_rows == 0
    ids = kept.column("id").to_pylist()
    assert len(set(ids)) == 15  # generated, unique, deterministic
    assert read_all(cfg)[0].column("id").to_pylist() == ids
    assert kept.column("n").to_pylist()[:6] == list(range(6))


def test_hf_save_to_disk(tmp_path, corpus_rows):
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_list([{"id": r["id"], "text": r["text"]} for r in corpus_rows[:7]])
    ds.save_to_disk(str(tmp_path / "hf"))
    kept, rejected = read_all(InputConfig(paths=[str(tmp_path / "hf")]))
    assert kept.column("id").to_pylist() == [r["id"] for r in corpus_rows[:7]]


def test_missing_path_and_bad_config_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        plan_units(InputConfig(paths=[str(tmp_path / "nope.jsonl")]))
    with pytest.raises(ConfigError, match=r"stages\[1\].gopher_quality: min_doc_words"):
        parse_config({"input": {"paths": ["x"]}, "output": {"path": "o"},
                      "stages": ["normalize", {"gopher_quality": {"min_doc_words": "many"}}]})
    with pytest.raises(ConfigError, match="unknown stage 'nope'"):
        parse_config({"input": {"paths": ["x"]}, "output": {"path": "o"}, "stages": ["nope"]})
    with pytest.raises(ConfigError, match="output.shard_byts"):
        parse_config({"input": {"paths": ["x"]}, "output": {"path": "o", "shard_byts": 5}})
