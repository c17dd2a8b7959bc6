"""multilingual_quality: FineWeb 2's per-language rules, word splitters, label resolution, validation.

The agreement test runs DataTrove's filters configured as ``fineweb-2-pipeline.py`` does on
real documents of each language from the demo corpus (Hindi and Thai, absent there, on
inline text) and requires the same keep/drop decision for every one.

Run: .venv/bin/python -m pytest tests/pipeline/stages/test_multilingual.py -q
"""

from __future__ import annotations

import io
import json
import pickle
import sys
from pathlib import Path

import pyarrow as pa
import pytest

from pipeline.config import parse_config
from pipeline.errors import ConfigError
from pipeline.stages.filters._words import splitter
from pipeline.stages.filters.quality import Quality, QualityConfig
from pipeline.stages.filters.multilingual import (
    MultilingualQuality,
    MultilingualQualityConfig,
    fineweb2_data,
    resolve_label,
)

REPO = Path(__file__).resolve().parents[3]
TARGET = ["en", "de", "fr", "es", "it", "pt", "ru", "ja", "zh", "ko", "ar", "hi", "tr", "vi", "pl"]
PER_LANG = 3

HI = ("भारत एक विशाल देश है और इसकी संस्कृति बहुत पुरानी है। यहाँ के लोग अनेक भाषाएँ बोलते हैं और "
      "कई त्योहार मनाते हैं। दिल्ली भारत की राजधानी है और यह शहर अपने इतिहास के लिए प्रसिद्ध है। ") * 4
TH = ("ประเทศไทยเป็นประเทศที่มีวัฒนธรรมเก่าแก่ และมีประชากรจำนวนมาก คนไทยชอบกินอาหารรสจัด "
      "กรุงเทพมหานครเป็นเมืองหลวงของประเทศไทย และเป็นที่ตั้งของวัดและพระราชวังจำนวนมาก\n") * 4


@pytest.fixture(scope="module")
def stage() -> MultilingualQuality:
    return MultilingualQuality(MultilingualQualityConfig())


@pytest.fixture(scope="module")
def samples(demo_corpus) -> dict[str, list[dict]]:
    import zstandard

    out: dict[str, list[dict]] = {}
    with open(demo_corpus, "rb") as f:
        for line in io.TextIOWrapper(zstandard.ZstdDecompressor().stream_reader(f), encoding="utf-8"):
            row = json.loads(line)
            code = (row.get("lang") or "").split("-")[0]
            if code in TARGET and row["source"] == "web-docs" and len(out.setdefault(code, [])) < PER_LANG:
                out[code].append(row)
    out["hi"] = [{"id": "hi-0", "text": HI}, {"id": "hi-1", "text": HI[:60]}]
    out["th"] = [{"id": "th-0", "text": TH}, {"id": "th-1", "text": TH[:40]}]
    return out


def test_every_target_language_has_a_cited_rule_set(stage):
    data = fineweb2_data()
    assert "github.com/huggingface/fineweb-2" in data["source"]["thresholds"]
    assert set(TARGET) <= set(stage.rules)
    for code in TARGET[1:]:
        entry = data["languages"][code]
        assert entry["stopwords"] and entry["fineweb2_config"].count("_") == 1


@pytest.mark.parametrize("code, text, expect", [
    ("zh", "我们在北京的大学学习中文。", ["我们", "在", "北京", "的", "大学", "学习", "中文", "。"]),
    ("ja", "東京に行きました。", ["東京", "に", "行き", "まし", "た", "。"]),
    ("th", "ฉันชอบกินข้าวผัด", ["ฉัน", "ชอบ", "กิน", "ข้าวผัด"]),
    ("hi", "यह एक परीक्षण है।", ["यह", "एक", "परीक्षण", "है", "।"]),
    ("de", "Das ist's, nicht wahr?", ["Das", "ist's", ",", "nicht", "wahr", "?"]),
])
def test_word_splitters_segment_unspaced_scripts(stage, code, text, expect):
    assert splitter(*stage.rules[code].splitter)(text) == expect


def test_korean_splitter_uses_kiwi(stage):
    words = splitter(*stage.rules["ko"].splitter)("나는 학교에 갑니다.")
    assert words[:4] == ["나", "는", "학교", "에"]


def test_same_decisions_as_fineweb2_on_real_text(stage, samples):
    sys.path.insert(0, str(REPO / "benchmarks"))
    from multilingual_bench import datatrove_chain, datatrove_decide

    checked = 0
    for code in TARGET:
        docs = samples.get(code, [])
        assert docs, f"no sample for {code}"
        chain = datatrove_chain(code)
        for d in docs:
            ours, _ = stage.evaluate(d["text"], code)
            theirs = datatrove_decide(chain, d["id"], d["text"])
            assert (ours is None) == (theirs is None), (code, d["id"], ours, theirs)
            checked += 1
    assert checked >= 2 * len(TARGET)


def test_english_rule_set_is_the_quality_stage_without_c4(samples):
    ml = MultilingualQuality(MultilingualQualityConfig())
    q = Quality(QualityConfig(c4=None))
    for d in samples["en"]:
        assert (ml.evaluate(d["text"], "en")[0] is None) == (q.decide(d["text"]).reason is None)


def test_label_picks_rule_set_and_falls_back(stage):
    known = set(stage.rules)
    assert resolve_label("zh-Hans", known) == "zh"
    assert resolve_label("deu_Latn", known) == "de"
    assert resolve_label("DE", known) == "de"
    assert resolve_label("und", known) is None and resolve_label(None, known) is None
    assert stage.rule_set_for("xx-unknown") == "en"
    table = pa.table({"id": ["a", "b", "c"], "text": ["Ein kurzer Satz.", "short text", "文本"],
                      "lang": ["de", "und", "zh-Hant"]})
    res = stage.process(table)
    got = {r["id"]: r["mq_rules"] for r in res.rejected.to_pylist()}
    assert got == {"a": "de", "b": "en", "c": "zh"}  # all three too short to keep, each by its own rules
    assert all(r["reject_reason"] and r["reject_stage"] == "multilingual_quality" for r in res.rejected.to_pylist())


def test_fallback_null_passes_unknown_languages_untouched():
    st = MultilingualQuality(MultilingualQualityConfig(fallback=None))
    res = st.process(pa.table({"id": ["a"], "text": ["tiny"], "lang": ["und"]}))
    assert res.kept.num_rows == 1 and res.kept.column("mq_rules")[0].as_py() is None


def test_thresholds_differ_from_english(stage):
    de = stage.rules["de"]
    assert de.gopher_quality.stop_words[:3] == ["der", "und", "die"]
    assert de.gopher_quality.max_avg_word_length == 15 and de.gopher_quality.min_avg_word_length is None
    assert de.fineweb.char_duplicates_ratio == 0.1 and de.gopher_repetition.dup_para_frac is None


def test_overrides_apply_and_are_validated():
    st = MultilingualQuality(MultilingualQualityConfig(overrides={"de": {"gopher_quality": {"min_stop_words": 5}}}))
    assert st.rules["de"].gopher_quality.min_stop_words == 5
    assert st.rules["de"].gopher_quality.stop_words[0] == "der"  # the rest of the shipped set stays
    base = {"input": {"paths": ["x.jsonl"]}, "output": {"path": "out"}}
    for opts, word in [({"fallback": "xx"}, "fallback"), ({"languages": ["en", "qq"]}, "qq"),
                       ({"overrides": {"de": {"gopher_quality": {"min_stop_wordz": 1}}}}, "min_stop_wordz"),
                       ({"lang_colum": "lang"}, "lang_colum")]:
        with pytest.raises(ConfigError, match=word):
            parse_config({**base, "stages": [{"multilingual_quality": opts}]})


def test_missing_language_column_is_a_clear_error(stage):
    with pytest.raises(ValueError, match="no 'lang' column"):
        stage.process(pa.table({"id": ["a"], "text": ["x"]}))


def test_pickle_round_trip_keeps_decisions(stage, samples):
    stage.evaluate(samples["ja"][0]["text"], "ja")  # loads a splitter, which must not travel
    clone = pickle.loads(pickle.dumps(stage))
    assert clone._caches is None  # splitters and their models are rebuilt where the stage runs
    for code in ("ja", "zh", "de"):
        d = samples[code][0]
        assert clone.evaluate(d["text"], code) == stage.evaluate(d["text"], code)


@pytest.mark.parametrize("code", ["de", "fr", "ru", "ar", "pl", "tr", "es", "vi", "zh", "ja", "ko"])
def test_words_equal_datatrove_tokenizer(stage, samples, code):
    """Word for word, not only the decision: our splitter (with its chunk cache) vs DataTrove's."""
    from datatrove.utils.word_tokenizers import KiwiTokenizer, load_word_tokenizer

    lang = fineweb2_data()["languages"][code]["fineweb2_config"]
    theirs = KiwiTokenizer(model_type="cong") if code == "ko" else load_word_tokenizer(lang)
    ours = splitter(*stage.rules[code].splitter)
    for d in samples[code][:2]:
        assert ours(d["text"]) == theirs.word_tokenize(d["text"]), (code, d["id"])


def test_splitters_and_models_live_on_the_stage():
    """Each stage owns its splitters (and their models and chunk caches), one per language
    it met, never a module global; two stages share none; pickling ships none."""
    a = MultilingualQuality(MultilingualQualityConfig(languages=["de", "ja"], fallback=None))
    b = MultilingualQuality(MultilingualQualityConfig(languages=["de", "ja"], fallback=None))
    text = "Der Hund läuft schnell über die Straße, und die Katze schläft im Garten. " * 8
    assert a.evaluate(text, "de") == b.evaluate(text, "de")
    assert set(a.caches.splitters) == {("spacy", "de")}
    assert a.caches.splitters[("spacy", "de")] is not b.caches.splitters[("spacy", "de")]
    a.evaluate("今日は良い天気です。", "ja")
    assert set(a.caches.splitters) == {("spacy", "de"), ("sudachi", "ja")}  # bounded by the configured languages
    assert pickle.loads(pickle.dumps(a))._caches is None
    a.clear_caches()
    assert a._caches is None and a.evaluate(text, "de") == b.evaluate(text, "de")
