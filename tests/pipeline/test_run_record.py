"""The curate run record ``OUT.curation/_work/run.json`` and the map phases' done-markers (common.units).

On a real local Ray cluster with a small JSONL input: the record is a typed, versioned
``RunRecord`` holding the unit plan; a record of the earlier shape resumes; a damaged one
is refused naming the file, and ``overwrite`` replaces it.
Run: ``.venv/bin/python -m pytest tests/pipeline/test_run_record.py -q``
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from common.units import RECORD_VERSION, RunRecord, RunRecordError
from pipeline.config import parse_config
from pipeline.errors import PipelineError
from pipeline.read import WorkUnit
from pipeline.runner import CuratePlan, ledger, run_pipeline


def _cfg(tmp_path: Path, **over):
    inp = tmp_path / "docs.jsonl"
    if not inp.exists():
        inp.write_text("".join(json.dumps({"id": f"d{i}", "text": f"document number {i} " * (i % 5 + 1)}) + "\n"
                               for i in range(30)))
    cfg = {"input": {"paths": [str(inp)], "unit_rows": 8}, "output": {"path": str(tmp_path / "out")},
           "stages": ["exact_dedup"], "ray": {"workers": 1}, "progress": False, **over}
    return parse_config(cfg)


def _record_path(tmp_path: Path) -> Path:
    return tmp_path / "out.curation" / "_work" / "run.json"


def test_run_record_is_typed_and_markers_are_per_unit(tmp_path, ray_cluster):
    cfg = _cfg(tmp_path)
    m = run_pipeline(cfg).manifest
    raw = json.loads(_record_path(tmp_path).read_text())
    rec = RunRecord.model_validate(raw)
    assert (rec.job, rec.fingerprint, rec.format_version) == ("curate", m["config_hash"], RECORD_VERSION)
    assert "exact_dedup" in json.dumps(rec.settings["stages"]) and "path" not in rec.settings["output"]
    units = CuratePlan.model_validate(rec.state).units
    assert [u.name for u in units] == ["u000000", "u000001", "u000002", "u000003"]
    assert all(isinstance(u, WorkUnit) for u in units) and sum(u.size for u in units) == 30
    book = ledger(cfg)
    assert book.done_units(phase="map0") == {u.name for u in units}
    assert book.done("u000000", phase="map0") == {"rows": 8}


def test_a_record_of_the_earlier_shape_resumes(tmp_path, ray_cluster):
    cfg = _cfg(tmp_path)
    first = run_pipeline(cfg).manifest
    rec = RunRecord.model_validate_json(_record_path(tmp_path).read_text())
    # what the runner wrote before the shared run record: config_hash, format_version 2, units
    _record_path(tmp_path).write_text(json.dumps({"config_hash": rec.fingerprint, "format_version": 2,
                                                  "units": rec.state["units"]}))
    (tmp_path / "out.curation" / "manifest.json").unlink()
    again = run_pipeline(cfg)
    assert again.units_skipped == again.units_total == 4  # the plan and every unit's marker were reused
    assert [s["sha256"] for s in again.manifest["shards"]] == [s["sha256"] for s in first["shards"]]


def test_other_config_and_damaged_record_are_refused_and_overwrite_replaces_them(tmp_path, ray_cluster):
    run_pipeline(_cfg(tmp_path))
    other = _cfg(tmp_path, stages=["exact_dedup", "minhash_dedup"])
    with pytest.raises(PipelineError, match="holds a run of a different config"):
        run_pipeline(other)
    _record_path(tmp_path).write_text('{"job": "curate"')  # cut short
    with pytest.raises(RunRecordError, match=r"run\.json: not JSON"):
        run_pipeline(other)
    m = run_pipeline(other, overwrite=True).manifest
    assert RunRecord.model_validate_json(_record_path(tmp_path).read_text()).fingerprint == m["config_hash"]
    assert [s["stage"] for s in m["stages"]] == ["read", "exact_dedup", "minhash_dedup"]
