"""The curated manifest records its config (secrets redacted), library versions and run times.

Run: ``.venv/bin/python -m pytest tests/pipeline/test_provenance.py -q``
"""

from __future__ import annotations

import datetime as dt
import doctest
import json
import platform
from importlib import metadata

import pipeline.provenance
from pipeline.config import parse_config
from pipeline.provenance import REDACTED, langid_model, redact, run_record
from pipeline.runner import run_pipeline


def _cfg(inp, out, **over):
    raw = {"input": {"paths": [str(inp)], "unit_rows": 50,
                     "storage_options": {"key": "AKIAEXAMPLE", "secret": "s3cr3t", "anon": False}},
           "output": {"path": str(out), "storage_options": {"token": "hf_abc"}},
           "stages": ["normalize", {"langid": {"prefix_chars": 200}}], "ray": {"workers": 1}, "progress": False}
    raw.update(over)
    return parse_config(raw)


def test_redact_hides_credentials_but_keeps_settings():
    doc = {"storage_options": {"key": "AKIA", "client_kwargs": {"region_name": "x"}},
           "stages": [{"name": "rephrase", "options": {"api_key": "sk-1", "max_chunk_tokens": 512}}],
           "hf_token": "hf_x", "id_field": "id", "empty_secret": ""}
    r = redact(doc)
    assert r["storage_options"] == {"key": REDACTED, "client_kwargs": {"region_name": REDACTED}}
    assert r["stages"][0]["options"] == {"api_key": REDACTED, "max_chunk_tokens": 512}
    assert r["hf_token"] == REDACTED and r["id_field"] == "id" and r["empty_secret"] == ""
    assert doctest.testmod(pipeline.provenance).failed == 0


def test_run_record_has_config_versions_times_and_no_secret_or_path(tmp_path):
    cfg = _cfg(tmp_path / "in.jsonl", tmp_path / "out", ray={"address": "10.1.2.3:6379"})
    rec = run_record(cfg, started_at="2026-01-01T00:00:00+00:00")
    text = json.dumps(rec)
    for leak in ("AKIAEXAMPLE", "s3cr3t", "hf_abc", str(tmp_path / "out"), "10.1.2.3"):
        assert leak not in text, leak
    assert rec["config"]["input"]["unit_rows"] == 50 and rec["config"]["stages"][1]["name"] == "langid"
    v = rec["versions"]
    assert v["python"] == platform.python_version()
    for pkg in ("ray", "pyarrow", "tokenizers"):
        assert v[pkg] == metadata.version(pkg)
    assert v["langid_model"] == {"backend": "py3langid", "package": "py3langid",
                                 "version": metadata.version("py3langid")}
    assert langid_model({"backend": "lingua"}) == {"backend": "lingua", "package": "lingua-language-detector",
                                                   "version": metadata.version("lingua-language-detector"),
                                                   "low_accuracy": True}
    assert dt.datetime.fromisoformat(rec["finished_at"]) >= dt.datetime.fromisoformat(rec["started_at"])


def test_fasttext_model_is_named_by_file_and_digest(tmp_path):
    model = tmp_path / "models" / "lid.176.ftz"
    model.parent.mkdir()
    model.write_bytes(b"not really a model")
    info = langid_model({"model_path": str(model)})
    assert info["file"] == "lid.176.ftz" and len(info["sha256"]) == 64 and str(tmp_path) not in json.dumps(info)


def test_curated_manifest_records_the_run(tmp_path, ray_cluster, corpus_rows, jsonl_writer):
    inp = jsonl_writer(tmp_path / "docs.jsonl", corpus_rows[:60], bad=False)
    before = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    m = run_pipeline(_cfg(inp, tmp_path / "out")).manifest
    run = m["run"]
    assert before <= dt.datetime.fromisoformat(run["started_at"]) <= dt.datetime.fromisoformat(run["finished_at"])
    assert run["config"]["stages"][0]["name"] == "normalize"
    assert run["versions"]["pyarrow"] == metadata.version("pyarrow")
    on_disk = (tmp_path / "out.curation" / "manifest.json").read_text()
    assert "s3cr3t" not in on_disk and "hf_abc" not in on_disk and json.loads(on_disk)["run"] == run
