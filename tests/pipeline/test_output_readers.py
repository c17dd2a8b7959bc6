"""A curated output folder loads as exactly the kept rows in the readers users reach for first.

A real curate run on a real local Ray cluster, then ``datasets.load_dataset(OUT)``,
``load_dataset("parquet", data_dir=OUT)``, ``pyarrow.dataset.dataset(OUT)`` and a duckdb
``OUT/**/*.parquet`` glob, each with its default options; the rejected rows, manifest and
work state sit in the run folder ``OUT.curation`` (``pipeline.layout``). Also the typed
manifest: one reader, a wrong-typed field named.

Run: .venv/bin/python -m pytest tests/pipeline/test_output_readers.py -q
"""

from __future__ import annotations

import json

import pyarrow.dataset as pads
import pytest
from typer.testing import CliRunner

from pipeline.config import parse_config
from pipeline.errors import PipelineError
from pipeline.manifest import CuratedManifest, ManifestError, load_manifest
from pipeline.runner import run_pipeline

datasets = pytest.importorskip("datasets")
duckdb = pytest.importorskip("duckdb")


@pytest.fixture(scope="module")
def curated(tmp_path_factory, ray_cluster, corpus_rows, jsonl_writer):
    tmp = tmp_path_factory.mktemp("readers")
    code = next(r for r in corpus_rows if r["source"].startswith("code-"))  # no quality rule applies to code
    rows = corpus_rows[:90] + [dict(code, id="~copy")]  # one exact duplicate
    inp = jsonl_writer(tmp / "docs.jsonl", rows)  # plus 3 malformed lines: read rejections
    out = tmp / "out"
    cfg = {"input": {"paths": [str(inp)], "unit_rows": 30}, "output": {"path": str(out), "shard_bytes": 100_000},
           "stages": ["normalize", {"quality": {"only": {"source": ["web-docs"]}}}, "exact_dedup"],
           "ray": {"workers": 2}, "progress": False}
    m = run_pipeline(parse_config(cfg)).manifest
    assert m["rows"] > 0 and m["rejected"]["rows"] >= 4 and len(m["shards"]) > 1
    return out, m, cfg


def _count(reader: str, folder: str, cache: str) -> int:
    if reader == "load_dataset(OUT)":
        return len(datasets.load_dataset(folder, split="train", cache_dir=cache))
    if reader == "load_dataset(parquet, data_dir=OUT)":
        return len(datasets.load_dataset("parquet", data_dir=folder, split="train", cache_dir=cache))
    if reader == "pyarrow.dataset(OUT)":
        return pads.dataset(folder).count_rows()
    return duckdb.connect().execute(f"SELECT count(*) FROM '{folder}/**/*.parquet'").fetchone()[0]


READERS = ["load_dataset(OUT)", "load_dataset(parquet, data_dir=OUT)", "pyarrow.dataset(OUT)", "duckdb OUT/**"]


def test_four_readers_load_exactly_the_kept_rows(curated, tmp_path):
    out, m, _ = curated
    got = {r: _count(r, str(out), str(tmp_path / "hf")) for r in READERS}
    assert got == {r: m["rows"] for r in READERS}, (got, m["rows"], m["rejected"]["rows"])
    # and the text itself, not only the count: the ids are the kept ones
    ids = set(pads.dataset(out).to_table(columns=["id"]).column("id").to_pylist())
    assert "~copy" not in ids and len(ids) == m["rows"]


def test_rejected_rows_load_from_the_run_folder(curated, tmp_path):
    out, m, _ = curated
    run = f"{out}.curation"
    n = m["rejected"]["rows"]
    assert len(datasets.load_dataset(run, "rejected", split="train", cache_dir=str(tmp_path / "hf"))) == n
    assert len(datasets.load_dataset(run, split="train", cache_dir=str(tmp_path / "hf"))) == n  # the card's default
    assert pads.dataset(f"{run}/rejected").count_rows() == n
    assert duckdb.connect().execute(f"SELECT count(*) FROM '{run}/rejected/*.parquet'").fetchone()[0] == n
    reasons = pads.dataset(f"{run}/rejected").to_table(columns=["reject_reason"]).column(0).to_pylist()
    assert all(reasons) and "exact_duplicate" in reasons


def test_manifest_has_one_typed_reader(curated, tmp_path):
    out, m, _ = curated
    typed = load_manifest(str(out))
    assert isinstance(typed, CuratedManifest) and typed.to_json() == m
    assert typed.rows == sum(s.rows for s in typed.shards) and typed.format_version == 2
    # A copy with one field of the wrong type: the error names the file and the field.
    bad = tmp_path / "bad"
    bad.mkdir()
    (tmp_path / "bad.curation").mkdir()
    doc = json.loads((out.parent / "out.curation" / "manifest.json").read_text())
    doc["stages"][1]["docs_kept"] = "12"
    (tmp_path / "bad.curation" / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(ManifestError, match=r"bad\.curation/manifest\.json: .*stages\[1\]\.docs_kept"):
        load_manifest(str(bad))
    from pipeline.cli import app

    res = CliRunner().invoke(app, ["summary", str(bad)])
    assert res.exit_code == 1 and "stages[1].docs_kept" in res.output
    with pytest.raises(ManifestError, match="no manifest"):
        load_manifest(str(tmp_path / "nothing"))
    ok = CliRunner().invoke(app, ["summary", str(out)])
    assert ok.exit_code == 0 and f"{m['rows']:,} docs" in ok.output


def test_a_folder_in_the_earlier_layout_is_refused(curated, tmp_path):
    _, _, cfg = curated
    old = tmp_path / "old"
    (old / "_work").mkdir(parents=True)
    (old / "manifest.json").write_text("{}")
    with pytest.raises(PipelineError, match=r"not curated shards \(_work, manifest\.json\).*--overwrite"):
        run_pipeline(parse_config({**cfg, "output": {"path": str(old)}}))
    with pytest.raises(ManifestError, match="version-1 manifest"):
        load_manifest(str(old))
