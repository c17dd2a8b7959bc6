"""The engine stages through a real local Ray cluster: actor pools, a killed actor, loopback HTTP."""

from __future__ import annotations

import pyarrow as pa
import pytest

from pipeline.rephrase import RephraseConfig, RephraseStage, ScoreConfig, ScoreStage
from pipeline.rephrase._ray import map_stage, split_rejected
from pipeline.stages.base import REJECT_REASON

PERMISSIVE = {"reject_truncated": False, "check_language": False, "check_length_ratio": False,
              "check_repetition": False, "refusal_patterns": [], "min_chars": 0}


def _table(n):
    return pa.table({"id": [f"d{i}" for i in range(n)], "text": [f"Document {i} is about rivers and lakes." for i in range(n)],
                     "lang": ["en"] * n})


def _run(ray, table, stage, **kw):
    ds = ray.data.from_arrow(table).repartition(3)
    out = map_stage(ds, stage, **kw)
    return split_rejected(pa.concat_tables(ray.get(out.to_arrow_refs()), promote_options="permissive"))


def test_rephrase_transformers_in_actor_pool(ray_cluster, tiny_model):
    stage = RephraseStage(RephraseConfig(
        engine={"backend": "transformers", "model": str(tiny_model), "device": "cpu", "num_threads": 1},
        styles=["wikipedia"], sampling={"max_tokens": 8}, validation=PERMISSIVE, batch_size=4,
    ))
    kw = stage.ray_map_kwargs()
    assert kw["max_restarts"] == 3 and kw["max_task_retries"] == 3 and "num_gpus" not in kw
    kept, rejected = _run(ray_cluster, _table(10), stage)
    assert rejected.num_rows == 0
    assert sorted(kept.column("source_id").to_pylist()) == sorted(f"d{i}" for i in range(10))
    assert set(kept.column("rephrase_model").to_pylist()) == {str(tiny_model)}


def test_killed_engine_actor_is_restarted_and_its_batch_retried(ray_cluster, scripted_server, tmp_path, crash_once):
    srv = scripted_server()
    marker = tmp_path / "crashed"
    stage = crash_once(ScoreStage(ScoreConfig(
        engine={"backend": "openai", "model": "s", "base_url": srv.base_url, "api_key_env": None},
        threshold=3, batch_size=5,
    )), marker)
    assert stage.name == "score" and stage.ray_map_kwargs()["max_restarts"] == 3
    table = pa.table({"id": [f"d{i}" for i in range(12)], "text": [f"doc edu={i % 6}" for i in range(12)]})
    kept, rejected = _run(ray_cluster, table, stage)
    assert marker.exists()  # one actor process died mid-run...
    # ...and nothing was lost: every row is scored exactly once
    assert kept.num_rows + rejected.num_rows == 12
    assert sorted(kept.column("id").to_pylist() + rejected.column("id").to_pylist()) == sorted(table.column("id").to_pylist())
    assert sorted(kept.column("quality").to_pylist()) == [3.0, 3.0, 4.0, 4.0, 5.0, 5.0]
    assert set(rejected.column(REJECT_REASON).to_pylist()) == {"low_quality"}


def test_actor_that_keeps_dying_fails_the_job_with_a_named_cause(ray_cluster, scripted_server, tmp_path,
                                                                  crash_once):
    """With no actor restarts allowed, a dead actor ends the job with an error (no hang)."""
    import ray

    srv = scripted_server()
    stage = crash_once(ScoreStage(ScoreConfig(
        engine={"backend": "openai", "model": "s", "base_url": srv.base_url, "api_key_env": None},
        max_actor_restarts=0, max_task_retries=0,
    )), tmp_path / "m")
    with pytest.raises((ray.exceptions.RayError, RuntimeError)):
        _run(ray_cluster, _table(4), stage)
