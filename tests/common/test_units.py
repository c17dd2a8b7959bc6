"""Run records and done-markers of resumable work units (common.units).

Run: ``.venv/bin/python -m pytest tests/common/test_units.py -q``
"""

from __future__ import annotations

import json
import os
import pickle
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from common.errors import ConfigError
from common.units import RunMismatch, RunRecord, RunRecordError, UnitLedger, fingerprint

json_scalars = st.none() | st.booleans() | st.integers(-2**53, 2**53) | st.text(max_size=12)
settings_maps = st.dictionaries(st.text(min_size=1, max_size=8), json_scalars, max_size=6)
unit_names = st.from_regex(r"u[0-9]{1,5}-[A-Za-z0-9_.-]{0,20}", fullmatch=True)


class Counts(BaseModel):
    rows: int
    tokens: int


def _record(fp: str = "aaaa", **settings_) -> RunRecord:
    return RunRecord(job="tokenize", fingerprint=fp, settings=settings_)


@given(settings_maps, st.binary(max_size=64))
def test_fingerprint_ignores_key_order_and_sees_every_value(mapping, blob):
    reordered = dict(reversed(list(mapping.items())))
    assert fingerprint(mapping, [blob]) == fingerprint(reordered, [blob])
    assert len(fingerprint(mapping)) == 16
    assert fingerprint(mapping, [blob]) != fingerprint(mapping, [blob + b"x"])
    for key in mapping:
        assert fingerprint({**mapping, key: ["changed"]}, [blob]) != fingerprint(mapping, [blob])


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(unit_names, st.dictionaries(st.text(max_size=6), json_scalars, max_size=4), max_size=6))
def test_markers_round_trip_and_list_exactly_the_marked_units(tmp_path, results):
    ledger = UnitLedger(tmp_path / uuid.uuid4().hex)  # one fresh folder per example
    for unit, result in results.items():
        ledger.mark(unit, result)
    assert ledger.done_units() == set(results)
    for unit, result in results.items():
        assert ledger.done(unit) == result
    assert ledger.done("u99999-never") is None
    if results:  # atomic writes leave no temporary file behind
        assert sorted(os.listdir(ledger.folder)) == sorted(f"{u}.json" for u in results)


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=40))
def test_a_damaged_marker_means_redo_never_a_wrong_result(tmp_path, garbage):
    """Whatever bytes a marker holds, ``done`` gives a valid result or None (redo), never raises."""
    ledger = UnitLedger(tmp_path / "state")
    ledger.mark("u1", Counts(rows=3, tokens=40))
    path = tmp_path / "state" / "u1.json"
    path.write_bytes(garbage)
    got = ledger.done("u1", Counts)
    assert got is None or isinstance(got, Counts)
    path.write_bytes(Counts(rows=3, tokens=40).model_dump_json().encode()[:-1])  # torn
    assert ledger.done("u1", Counts) is None
    path.write_text('{"rows": 3}')  # valid JSON, not what the model needs
    assert ledger.done("u1", Counts) is None
    assert ledger.done("u1") == {"rows": 3}  # without a model, any JSON object is a result


def test_claim_starts_resumes_and_refuses_other_settings(tmp_path):
    ledger = UnitLedger(tmp_path / "out" / "_units", label=str(tmp_path / "out"))
    first = _record("f1", add_eos=True, shard_tokens=64, state_note="x")
    first = first.model_copy(update={"state": {"units": ["u1", "u2"]}})
    assert ledger.claim(first) == first
    ledger.mark("u1", {"rows": 1})
    # the same fingerprint resumes with the record on disk (its state, e.g. the plan, is the run's)
    again = ledger.claim(_record("f1", add_eos=True, shard_tokens=64))
    assert again.state == {"units": ["u1", "u2"]} and ledger.done_units() == {"u1"}
    with pytest.raises(RunMismatch) as err:
        ledger.claim(_record("f2", add_eos=False, shard_tokens=64), hint="use another --out")
    msg = str(err.value)
    assert isinstance(err.value, ConfigError)
    assert msg.startswith(f"{tmp_path / 'out'} holds a tokenize run with other settings")
    assert "fingerprint f1, now f2" in msg and "add_eos True -> False" in msg and msg.endswith("use another --out")
    assert "shard_tokens" not in msg, "only the settings that differ are listed"
    assert ledger.done_units() == {"u1"}, "a refused claim changes nothing"


def test_overwrite_clears_the_outputs_markers_and_record(tmp_path):
    ledger = UnitLedger(tmp_path / "_units")
    ledger.claim(_record("f1"))
    ledger.mark("u1", {"rows": 1})
    cleared = []
    new = ledger.claim(_record("f2"), overwrite=True, clear=lambda: cleared.append(True))
    assert cleared == [True] and ledger.done_units() == set()
    assert ledger.record() == new
    # a fresh folder or a resume never calls clear
    assert ledger.claim(_record("f2"), overwrite=True, clear=lambda: cleared.append(False)) == new
    assert cleared == [True]


def test_another_job_in_the_folder_is_refused(tmp_path):
    ledger = UnitLedger(tmp_path)
    ledger.claim(RunRecord(job="curate", fingerprint="same"))
    with pytest.raises(RunMismatch, match="holds a curate run \\(not tokenize\\)"):
        ledger.claim(RunRecord(job="tokenize", fingerprint="same"))


def test_unreadable_or_newer_records_are_named(tmp_path):
    ledger = UnitLedger(tmp_path)
    (tmp_path / "run.json").write_text("{half")
    with pytest.raises(RunRecordError, match=r"run.json: not JSON"):
        ledger.claim(_record())
    (tmp_path / "run.json").write_text(json.dumps({"job": "tokenize"}))
    with pytest.raises(RunRecordError, match=r"run.json: not a run record \(fingerprint: Field required\)"):
        ledger.record()
    (tmp_path / "run.json").write_text(RunRecord(format_version=9, job="x", fingerprint="f").model_dump_json())
    with pytest.raises(RunRecordError, match="version 9 is newer"):
        ledger.record()
    assert ledger.claim(_record(), overwrite=True) == _record()  # overwrite replaces even an unreadable one


def test_a_legacy_record_is_converted_or_refused(tmp_path):
    ledger = UnitLedger(tmp_path)
    (tmp_path / "run.json").write_text(json.dumps({"fingerprint": "f1", "tokenizer": "tok"}))

    def legacy(raw):
        return RunRecord(format_version=0, job="tokenize", fingerprint=raw["fingerprint"]) if "tokenizer" in raw else None

    assert ledger.claim(_record("f1"), legacy=legacy).format_version == 0  # resumed as it was
    with pytest.raises(RunMismatch, match=r"fingerprint f1, now f2\)"):  # no settings kept: no list of differences
        ledger.claim(_record("f2", a=1), legacy=legacy)
    with pytest.raises(RunRecordError, match="not a run record"):
        ledger.claim(_record("f1"))  # without a converter, the earlier form is named, not guessed at


def test_unit_names_cannot_escape_or_hit_the_record(tmp_path):
    ledger = UnitLedger(tmp_path)
    for bad in ("", "a/b", "run"):
        with pytest.raises(ValueError, match="unit name"):
            ledger.mark(bad, {})


def test_phases_keep_their_own_markers_and_the_ledger_pickles(tmp_path):
    ledger = UnitLedger(tmp_path / "_work", suffix=".done")
    ledger.mark("u000001", {"rows": 5}, phase="map0")
    clone = pickle.loads(pickle.dumps(ledger))  # what a Ray task receives
    clone.mark("u000002", {"rows": 7}, phase="map0")
    clone.mark("u000001", {"rows": 4}, phase="map1")
    assert ledger.done_units(phase="map0") == {"u000001", "u000002"}
    assert ledger.done_units(phase="map1") == {"u000001"} and ledger.done_units() == set()
    assert sorted(p.name for p in Path(tmp_path / "_work" / "map0").iterdir()) == ["u000001.done", "u000002.done"]
    ledger.forget("u000001", phase="map0")
    assert ledger.done("u000001", phase="map0") is None and ledger.done("u000001", phase="map1") == {"rows": 4}


def test_records_and_markers_on_s3(s3_env):
    """The curate output may be on an object store: the same ledger over moto's S3 server on loopback."""
    s3_env("units")
    opts = {"skip_instance_cache": True}
    ledger = UnitLedger("s3://units/out.curation/_work", suffix=".done", storage_options=opts)
    ledger.claim(_record("f1"))
    ledger.mark("u1", Counts(rows=2, tokens=9), phase="map0")
    other = UnitLedger("s3://units/out.curation/_work", suffix=".done", storage_options=opts)  # another process
    assert other.done("u1", Counts, phase="map0") == Counts(rows=2, tokens=9)
    assert other.done_units(phase="map0") == {"u1"}
    with pytest.raises(RunMismatch, match="s3://units/out.curation/_work holds a tokenize run"):
        other.claim(_record("f2"))
    other.claim(_record("f2"), overwrite=True)
    assert ledger.done_units(phase="map0") == set() and ledger.record().fingerprint == "f2"
