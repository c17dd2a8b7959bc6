"""The rephrase / score / quality_classifier stages called directly on Arrow batches (no Ray)."""

from __future__ import annotations

import json
import pickle

import pyarrow as pa
import pytest

from pipeline.rephrase import (
    HashedNgramClassifier,
    QualityClassifierStage,
    RephraseConfig,
    RephraseStage,
    ScoreConfig,
    ScoreStage,
)
from pipeline.rephrase.stages import META_FIELDS
from pipeline.stages.base import REJECT_REASON, REJECT_STAGE, STAGES


def _docs(texts, langs=None):
    n = len(texts)
    return pa.table(
        {
            "id": [f"d{i}" for i in range(n)],
            "text": texts,
            "lang": langs or ["en"] * n,
            "source": ["web"] * n,
        }
    )


def _openai(srv, **kw):
    return {"backend": "openai", "model": "scripted", "base_url": srv.base_url, "api_key_env": None,
            "max_retries": 1, "backoff_s": 0.01, **kw}


def test_stages_are_registered_and_pickle_without_engines(tiny_model):
    assert {"rephrase", "score", "quality_classifier"} <= set(STAGES)
    stage = RephraseStage(RephraseConfig(engine={"backend": "transformers", "model": str(tiny_model)}))
    clone = pickle.loads(pickle.dumps(stage))
    assert clone.config == stage.config and clone._engine is None


def test_config_errors_name_the_key(tmp_path):
    with pytest.raises(ValueError, match="unknown rephrase style 'nope'"):
        RephraseConfig(engine={"backend": "transformers", "model": "m"}, styles=["nope"])
    with pytest.raises(ValueError, match="gpu_memory_utilization"):
        RephraseConfig(engine={"backend": "vllm", "model": "m", "gpu_memory_utilization": 1.5})
    with pytest.raises(ValueError, match="extra_forbidden|Extra inputs"):
        RephraseConfig(engine={"backend": "transformers", "model": "m", "bogus": 1})
    with pytest.raises(ValueError, match="backend"):
        RephraseConfig(engine={"backend": "nope", "model": "m"})
    # fault injection is test code (tests/pipeline/rephrase/conftest.py), not a config key
    with pytest.raises(ValueError, match="chaos"):
        ScoreConfig(engine={"backend": "transformers", "model": "m"}, chaos={"crash_once_marker": "/tmp/x"})


def test_rephrase_with_scripted_model_keeps_order_metadata_and_reasons(scripted_server, tiny_model):
    srv = scripted_server()
    long_doc = "\n\n".join(f"Paragraph {i} explains one thing about water and heat in plain words." for i in range(12))
    table = _docs(
        [
            "Water boils at one hundred degrees at sea level, which is why cooking times change in the mountains.",
            "",
            "Please REFUSE this one, it is a perfectly normal sentence about the weather today.",
            "This text will LOOP forever and ever because the model gets stuck on it.",
            long_doc,
        ]
    )
    cfg = RephraseConfig(
        engine=_openai(srv, tokenizer=str(tiny_model), context_length=512),
        styles=["wikipedia", "distill"],
        style_mode="each",
        sampling={"max_tokens": 64, "seed": 7},
        source_text_column="source_text",
        max_chunk_tokens=60,
        validation={"check_language": False},
    )
    res = RephraseStage(cfg).process(table)
    assert res.kept.num_rows + res.rejected.num_rows == 2 * table.num_rows
    rej = dict(zip(res.rejected.column("id").to_pylist(), res.rejected.column(REJECT_REASON).to_pylist()))
    assert rej["d1#wikipedia"] == "empty_source"
    assert rej["d2#wikipedia"] == "refusal"
    assert rej["d3#distill"] == "repetition"
    assert set(res.rejected.column(REJECT_STAGE).to_pylist()) == {"rephrase"}
    kept = {r["id"]: r for r in res.kept.to_pylist()}
    assert set(kept) == {"d0#wikipedia", "d0#distill", "d4#wikipedia", "d4#distill"}
    d0 = kept["d0#wikipedia"]
    assert d0["text"] == table.column("text")[0].as_py().upper()
    assert d0["source_text"] == table.column("text")[0].as_py()
    assert d0["source_id"] == "d0" and d0["rephrase_style"] == "wikipedia" and d0["rephrase_style_version"] == 1
    assert d0["rephrase_model"] == "scripted" and json.loads(d0["rephrase_sampling"])["seed"] == 7
    assert d0["rephrase_chunks"] == 1 and d0["rephrase_completion_tokens"] > 0
    assert d0["rephrase_seed"] != kept["d0#distill"]["rephrase_seed"]
    for name, typ in META_FIELDS:
        assert res.kept.schema.field(name).type == typ
    # the long document was split by tokens and reassembled in order
    d4 = kept["d4#wikipedia"]
    assert d4["rephrase_chunks"] > 1
    paragraphs = [p for p in d4["text"].split("\n\n") if p]
    assert " ".join(paragraphs).split() == long_doc.upper().split()


def test_rephrase_rejects_rows_that_keep_failing(scripted_server):
    srv = scripted_server(fail_marker="POISON")
    cfg = RephraseConfig(
        engine=_openai(srv), styles=["distill"], validation={"check_language": False, "check_length_ratio": False}
    )
    res = RephraseStage(cfg).process(_docs(["a good sentence about rivers and lakes", "POISON pill text here", "more text on clouds"]))
    assert res.kept.column("id").to_pylist() == ["d0#distill", "d2#distill"]
    assert res.rejected.column(REJECT_REASON).to_pylist() == ["engine_error"]
    (error,) = res.rejected.column("engine_error").to_pylist()
    assert "HTTP 500" in error and "injected failure" in error
    assert res.kept.column("engine_error").to_pylist() == [None, None]


def test_rephrase_transformers_engine_on_tiny_model(tiny_model):
    cfg = RephraseConfig(
        engine={"backend": "transformers", "model": str(tiny_model), "device": "cpu"},
        styles=["multilingual_rephrase", "code_explain"],
        style_mode="each",
        sampling={"max_tokens": 16},
    )
    table = _docs(["Der Hund läuft schnell über die Wiese und bellt laut.", "def f(x):\n    return x * 2\n"], ["de", "zxx"])
    res = RephraseStage(cfg).process(table)
    assert res.kept.num_rows + res.rejected.num_rows == 4
    # a random model's noise never passes validation; every rejection is named
    allowed = {"empty", "truncated", "refusal", "wrong_language", "length_ratio", "repetition"}
    assert set(res.rejected.column(REJECT_REASON).to_pylist()) <= allowed
    assert set(res.rejected.column("rephrase_style").to_pylist()) <= {"multilingual_rephrase", "code_explain"}

    permissive = cfg.model_copy(update={"validation": cfg.validation.model_copy(
        update={"reject_truncated": False, "check_language": False, "check_length_ratio": False,
                "check_repetition": False, "refusal_patterns": [], "min_chars": 0})})
    res = RephraseStage(permissive).process(table)
    assert res.kept.num_rows == 4
    assert all(t > 0 for t in res.kept.column("rephrase_completion_tokens").to_pylist())


def test_score_stage_parses_and_filters(scripted_server):
    srv = scripted_server()
    table = _docs(["A lesson. edu=4", "An ad. edu=1", "No score here", "Textbook chapter edu=5"])
    stage = ScoreStage(ScoreConfig(engine=_openai(srv), threshold=3, keep_judge_output=True))
    res = stage.process(table)
    assert res.kept.column("id").to_pylist() == ["d0", "d3"]
    assert res.kept.column("quality").to_pylist() == [4.0, 5.0]
    assert res.kept.column("quality_judge").to_pylist()[0].endswith("Educational score: 4")
    rej = dict(zip(res.rejected.column("id").to_pylist(), res.rejected.column(REJECT_REASON).to_pylist()))
    assert rej == {"d1": "low_quality", "d2": "unparseable_score"}
    assert res.rejected.column("quality").to_pylist() == [1.0, None]

    keep_all = ScoreStage(ScoreConfig(engine=_openai(srv), threshold=None, on_unparseable="keep"))
    assert keep_all.process(table).kept.num_rows == 4


def test_quality_classifier_train_save_load_predict_and_stage(tmp_path):
    good = [f"lesson {i}: the derivative measures the rate of change of a function, with worked examples" for i in range(30)]
    bad = [f"buy now {i} cheap deals click here free shipping limited offer" for i in range(30)]
    clf = HashedNgramClassifier(dim_bits=14)
    metrics = clf.fit(good + bad, [4.5] * 30 + [0.5] * 30, epochs=100)
    assert metrics["n_valid"] == 6 and metrics["valid_accuracy_at_threshold"] == 1.0
    path = clf.save(tmp_path / "q.npz")
    again = HashedNgramClassifier.load(path)
    assert again.predict(["the derivative of a function"])[0] > 3 > again.predict(["cheap deals, buy now"])[0]

    stage = QualityClassifierStage(QualityClassifierStage.Config(model_path=str(path), threshold=3.0))
    res = pickle.loads(pickle.dumps(stage)).process(_docs(["worked examples of the derivative", "click here for free shipping"]))
    assert res.kept.column("id").to_pylist() == ["d0"] and res.rejected.column(REJECT_REASON).to_pylist() == ["low_quality"]
    assert res.kept.schema.field("quality").type == pa.float32()

    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    from pipeline.rephrase import ClassifierError

    with pytest.raises(ClassifierError, match="bad.npz: not a quality-classifier file"):
        HashedNgramClassifier.load(tmp_path / "bad.npz")
    with pytest.raises(ValueError, match="model_path"):
        QualityClassifierStage.Config(model_path=str(tmp_path / "missing.npz"))


def test_hash_style_mode_is_one_row_per_document_and_deterministic(scripted_server):
    srv = scripted_server()
    cfg = RephraseConfig(engine=_openai(srv), styles=["wikipedia", "distill", "knowledge_list"],
                         validation={"check_language": False, "check_length_ratio": False})
    table = _docs([f"Document number {i} talks about rivers and lakes." for i in range(12)])
    a = RephraseStage(cfg).process(table)
    b = RephraseStage(cfg).process(table)
    assert a.kept.num_rows == 12 and a.rejected.num_rows == 0
    assert a.kept.column("source_id").to_pylist() == table.column("id").to_pylist()
    styles = a.kept.column("rephrase_style").to_pylist()
    assert styles == b.kept.column("rephrase_style").to_pylist() and len(set(styles)) > 1
