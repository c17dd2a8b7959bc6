"""decontaminate: n-gram matching robust to wrapping/spacing/punctuation, eval sets via fsspec, clear errors.

Run: .venv/bin/python -m pytest tests/pipeline/stages/test_decontaminate.py -q
"""

from __future__ import annotations

import gzip
import json
import pickle
import textwrap
from pathlib import Path

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.config import parse_config
from pipeline.errors import ConfigError
from pipeline.stages.decontaminate import Decontaminate, DecontaminateConfig, normalize_tokens

PASSAGE = ("Natalia sold clips to forty-eight of her friends in April, and then she sold half as many "
           "clips in May. How many clips did Natalia sell altogether in April and May?")
OTHER = ("A rectangle has a perimeter of thirty centimetres and its length is twice its width; "
         "what is the area of the rectangle in square centimetres, rounded to the nearest unit?")
HOST = ("The weather stayed mild all week, and the garden finally produced its first tomatoes. "
        "Neighbours came by to trade seeds and stories about the long winter. ")


def write_jsonl(path: Path, rows: list[dict], compress: bool = False) -> Path:
    data = "".join(json.dumps(r) + "\n" for r in rows).encode()
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


@pytest.fixture()
def stage(tmp_path) -> Decontaminate:
    gsm = write_jsonl(tmp_path / "gsm8k.jsonl.gz", [{"question": PASSAGE, "answer": "72"}], compress=True)
    pq.write_table(pa.table({"question": [OTHER], "choices": [["a", "b"]]}), tmp_path / "geo.parquet")
    return Decontaminate(DecontaminateConfig(eval_sets=[
        {"paths": [str(gsm)], "fields": ["question", "answer"]},
        {"name": "geometry", "paths": [str(tmp_path / "*.parquet")], "fields": ["question", "choices"]}]))


def variants(p: str) -> dict[str, str]:
    words = p.split()
    return {
        "verbatim": HOST + p + " " + HOST,
        "line_wrapped": HOST + "\n" + textwrap.fill(p, width=31) + "\n" + HOST,
        "re_punctuated": HOST + p.upper().replace(",", " ;").replace(" ", "  ").replace("?", "!!") + HOST,
        "partial_quote": HOST + '"' + " ".join(words[3:19]) + '..." she wrote. ' + HOST,
    }


def test_every_kind_of_copy_is_caught_with_set_and_ngram(stage):
    docs = {**{f"gsm-{k}": v for k, v in variants(PASSAGE).items()},
            **{f"geo-{k}": v for k, v in variants(OTHER).items()}, "clean": HOST * 3}
    res = stage.process(pa.table({"id": list(docs), "text": list(docs.values())}))
    rej = {r["id"]: r for r in res.rejected.to_pylist()}
    assert res.kept.column("id").to_pylist() == ["clean"]
    assert res.kept.column("decontam_hits").to_pylist() == [0]
    for doc_id, r in rej.items():
        want = "gsm8k" if doc_id.startswith("gsm") else "geometry"
        assert r["reject_reason"] == f"contaminated:{want}" and r["decontam_set"] == want
        assert len(r["decontam_ngram"].split()) == 13 and r["decontam_ngram"] in " ".join(normalize_tokens(
            PASSAGE if want == "gsm8k" else OTHER))
        assert r["decontam_hits"] >= 1


def test_twelve_shared_words_are_not_enough(stage):
    short = " ".join(normalize_tokens(PASSAGE)[:12])
    res = stage.process(pa.table({"id": ["a"], "text": [HOST + short + " " + HOST]}))
    assert res.kept.num_rows == 1


def test_min_hits_and_ngram_options(tmp_path):
    ev = write_jsonl(tmp_path / "e.jsonl", [{"text": PASSAGE}])
    strict = Decontaminate(DecontaminateConfig(eval_sets=[str(ev)], min_hits=100))
    assert strict.process(pa.table({"id": ["a"], "text": [PASSAGE]})).kept.num_rows == 1
    loose = Decontaminate(DecontaminateConfig(eval_sets=[str(ev)], ngram=5))
    assert loose.process(pa.table({"id": ["a"], "text": ["x sold half as many clips y"]})).rejected.num_rows == 1


def test_cjk_text_is_matched_per_character(tmp_path):
    zh = "小明有三个苹果，他又买了五个苹果，现在他一共有多少个苹果？"
    ev = write_jsonl(tmp_path / "zh.jsonl", [{"text": zh}])
    st_ = Decontaminate(DecontaminateConfig(eval_sets=[str(ev)]))
    wrapped = "今天天气很好。" + zh[:12] + "\n" + zh[12:] + "我们去公园。"
    assert st_.process(pa.table({"id": ["a"], "text": [wrapped]})).rejected.num_rows == 1


def test_eval_sets_from_any_fsspec_uri():
    fs = fsspec.filesystem("memory")
    with fs.open("/evals/mem.jsonl", "w") as f:
        f.write(json.dumps({"text": PASSAGE}) + "\n")
    st_ = Decontaminate(DecontaminateConfig(eval_sets=["memory://evals/*.jsonl"]))
    assert st_.index.names == ["evals"] and st_.index.stats["evals"]["passages"] == 1
    assert st_.process(pa.table({"id": ["a"], "text": [PASSAGE]})).rejected.num_rows == 1


def test_bad_eval_sets_fail_before_work(tmp_path):
    base = {"input": {"paths": ["x.jsonl"]}, "output": {"path": "out"}}
    with pytest.raises(ConfigError, match="no file matches"):
        parse_config({**base, "stages": [{"decontaminate": {"eval_sets": [str(tmp_path / "nope.jsonl")]}}]})
    with pytest.raises(ConfigError, match="eval_sets"):
        parse_config({**base, "stages": ["decontaminate"]})
    with pytest.raises(ConfigError, match="ngram"):
        parse_config({**base, "stages": [{"decontaminate": {"eval_sets": ["a.jsonl"], "ngram": 1}}]})
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"text": PASSAGE}) + "\n{not json\n")
    with pytest.raises(ConfigError, match=r"bad.jsonl:2: not JSON"):
        Decontaminate(DecontaminateConfig(eval_sets=[str(bad)]))
    nofield = write_jsonl(tmp_path / "nofield.jsonl", [{"q": PASSAGE}])
    with pytest.raises(ConfigError, match="no record has a text"):
        Decontaminate(DecontaminateConfig(eval_sets=[str(nofield)]))
    dup = write_jsonl(tmp_path / "d.jsonl", [{"text": PASSAGE}])
    with pytest.raises(ValueError, match="unique"):
        DecontaminateConfig(eval_sets=[str(dup), str(dup)])


def test_pickle_round_trip(stage):
    clone = pickle.loads(pickle.dumps(stage))
    t = pa.table({"id": ["a", "b"], "text": [PASSAGE, HOST]})
    assert clone.process(t).rejected.to_pylist() == stage.process(t).rejected.to_pylist()


_WORD = st.text(alphabet="abcdefghijklmnopqrstuvwxyzäöüéç0123456789", min_size=1, max_size=8)
_SEP = st.sampled_from([" ", "  ", "\n", "\t", ", ", ". ", " - ", "; ", "!\n", " (", ") ", "\u00a0", " — "])


@settings(max_examples=60, deadline=None)
@given(st.lists(_WORD, min_size=1, max_size=30), st.data())
def test_normalization_ignores_spacing_wrapping_punctuation_and_case(words, data):
    seps = [data.draw(_SEP) for _ in words]
    text = "".join(w + s for w, s in zip(words, seps))
    assert normalize_tokens(text.upper()) == normalize_tokens(" ".join(words))
