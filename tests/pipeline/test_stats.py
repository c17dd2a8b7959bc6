"""StageStats: counters of a batch, their sums, the per-unit stats file and the manifest entry."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from pipeline.manifest import StageEntry
from pipeline.stages.base import REJECT_REASON, REJECT_STAGE
from pipeline.stats import StageStats, UnitStats

reasons = st.dictionaries(st.sampled_from(["short", "long", "dup"]), st.integers(0, 50), max_size=3)


@st.composite
def stage_stats(draw) -> StageStats:
    kept, rejected = draw(st.integers(0, 1000)), draw(st.integers(0, 1000))
    counts = draw(st.none() | st.dictionaries(st.sampled_from(["pii_email", "pii_ip"]), st.integers(0, 9)))
    return StageStats.empty(docs_in=kept + rejected, docs_kept=kept, docs_rejected=rejected,
                            bytes_in=draw(st.integers(0, 10**9)), bytes_out=draw(st.integers(0, 10**9)),
                            seconds=draw(st.floats(0, 100)), reasons=draw(reasons), counts=counts)


def _totals(s: StageStats) -> tuple:
    return (s.docs_in, s.docs_kept, s.docs_rejected, s.bytes_in, s.bytes_out, round(s.seconds, 6),
            {k: v for k, v in s.reasons.items()}, s.counts)


@given(st.lists(stage_stats(), min_size=1, max_size=6))
def test_merge_sums_every_counter_in_any_order(pieces):
    forward = pieces[0]
    for p in pieces[1:]:
        forward = forward.merge(p)
    backward = pieces[-1]
    for p in reversed(pieces[:-1]):
        backward = backward.merge(p)
    assert _totals(forward) == _totals(backward)
    assert forward.docs_in == sum(p.docs_in for p in pieces)
    assert forward.reasons == {r: sum(p.reasons.get(r, 0) for p in pieces)
                               for r in {r for p in pieces for r in p.reasons}}
    assert forward.problem() is None  # in = kept + rejected holds for every sum of pieces that hold it


def test_of_batch_counts_rows_bytes_reasons_and_tallies():
    live = pa.table({"text": ["aa", "bbb", "c", "dddd"], "pii_email": [1, 0, 2, 0]})
    kept = live.slice(0, 2)
    rejected = live.slice(2).append_column(REJECT_STAGE, pa.array(["f", "f"])).append_column(
        REJECT_REASON, pa.array(["short", "short"]))
    s = StageStats.of_batch(live, kept, rejected, 0.5, ("pii_email",))
    assert (s.docs_in, s.docs_kept, s.docs_rejected, s.bytes_in, s.bytes_out) == (4, 2, 2, 10, 5)
    assert s.reasons == {"short": 2} and s.counts == {"pii_email": 3} and s.seconds == 0.5
    assert "counts" not in StageStats.of_batch(live, live, live.slice(0, 0), 0.1).to_json()


def test_unit_stats_file_keeps_its_shape():
    """The per-unit stats file: stage entries and ``<global stage>:prepare`` entries with only seconds."""
    u = UnitStats()
    u.add("read", StageStats.empty(docs_in=3, docs_kept=3, bytes_in=9, bytes_out=9, seconds=0.1))
    u.add("read", StageStats.empty(docs_in=1, docs_kept=0, docs_rejected=1, reasons={"bad_json": 1}))
    u.add_prepare("exact_dedup", 0.25)
    doc = json.loads(json.dumps(u.to_json()))
    assert doc == {"order": ["read"], "stages": {
        "read": {"docs_in": 4, "docs_kept": 3, "docs_rejected": 1, "bytes_in": 9, "bytes_out": 9, "seconds": 0.1,
                 "reasons": {"bad_json": 1}},
        "exact_dedup:prepare": {"seconds": 0.25}}}
    back = UnitStats.from_json(doc)
    assert back.to_json() == doc


def test_a_damaged_stats_entry_is_refused_with_its_field():
    with pytest.raises(ValidationError, match="docs_kept"):
        StageStats.model_validate({**StageStats.empty().to_json(), "docs_kept": "12"})
    with pytest.raises(ValidationError, match="docs_kep"):
        StageStats.model_validate({**StageStats.empty().to_json(), "docs_kep": 1})


def test_manifest_entry_is_the_stats_with_the_stage_name_first():
    s = StageStats.empty(docs_in=2, docs_kept=1, docs_rejected=1, reasons={"near_duplicate": 1}, partitions=4,
                         component_rounds=1)
    entry = StageEntry.model_validate({"stage": "minhash_dedup", **s.to_json()})
    dumped = entry.model_dump(mode="json", exclude_none=True)
    assert next(iter(dumped)) == "stage" and dumped == {"stage": "minhash_dedup", **s.to_json()}
    assert entry.merge(s).docs_in == 4 and entry.merge(s).stage == "minhash_dedup"
