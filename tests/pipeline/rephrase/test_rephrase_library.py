"""Style library, chunking and the light-import guarantee."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.rephrase.chunking import reassemble, split_by_tokens
from pipeline.rephrase.styles import StyleLibrary, lang_name, load_style_file
from rsdb.errors import ConfigError

EXPECTED = {"wikipedia", "qa_pairs", "distill", "extract_knowledge", "knowledge_list", "code_explain",
            "code_document", "code_restyle", "math_step_by_step", "multilingual_rephrase"}


def test_builtin_styles_are_versioned_and_complete():
    lib = StyleLibrary.builtin()
    assert EXPECTED <= set(lib.names())
    for s in lib:
        assert s.version >= 1 and "{text}" in s.prompt
    code = lib.get("code_explain")
    assert not code.check_language
    msgs = lib.get("multilingual_rephrase").messages("Привет {мир}", "ru")
    assert "Russian" in msgs[0]["content"] and "Привет {мир}" in msgs[-1]["content"]


def test_user_style_file_adds_and_overrides(tmp_path):
    f = tmp_path / "mine.yaml"
    f.write_text(
        "styles:\n"
        "  - name: tweet\n    version: 1\n    prompt: 'Summarise as a tweet: {text}'\n    length_ratio: [0.01, 1.0]\n"
        "  - name: wikipedia\n    version: 2\n    prompt: 'Encyclopedia v2: {text}'\n"
    )
    lib = StyleLibrary.load([f])
    assert lib.get("tweet").render_user("hi") == "Summarise as a tweet: hi"
    assert lib.get("wikipedia").version == 2
    assert "distill" in lib.names()


@pytest.mark.parametrize(
    "body,match",
    [
        ("styles:\n  - name: x\n    version: 1\n    prompt: 'no placeholder'\n", r"styles\[0\] \(x\): prompt"),
        ("styles:\n  - name: x\n    version: 0\n    prompt: '{text}'\n", r"styles\[0\] \(x\): version"),
        ("styles:\n  - name: x\n    version: 1\n    prompt: '{text}'\n    colour: red\n", r"colour"),
        ("styles:\n  - name: x\n    version: 1\n    prompt: '{text}'\n    length_ratio: [2, 1]\n", r"length_ratio"),
        ("just: a mapping\n", r"'styles:' list"),
        ("styles: [\n", r"invalid YAML"),
    ],
)
def test_bad_style_files_name_file_and_key(tmp_path, body, match):
    f = tmp_path / "bad.yaml"
    f.write_text(body)
    with pytest.raises(ConfigError, match=match) as ei:
        load_style_file(f)
    assert "bad.yaml" in str(ei.value)


def test_lang_name():
    assert lang_name("zh-Hant") == "Chinese" and lang_name("pt") == "Portuguese"
    assert lang_name(None) == lang_name("xx") == "the same language as the text"


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab .\n!?字")), max_size=300), st.integers(1, 12))
def test_chunks_rejoin_exactly_and_fit(text, budget):
    count = lambda s: len(s.split()) + s.count("字")  # noqa: E731 - a toy token counter
    chunks = split_by_tokens(text, count, budget)
    assert "".join(chunks) == text
    assert all(count(c) <= budget or len(c) == 1 for c in chunks)  # one character may exceed a tiny budget


def test_chunks_with_a_real_tokenizer_prefer_paragraphs(tiny_model):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    count = lambda s: len(tok.encode(s, add_special_tokens=False))  # noqa: E731
    paras = [f"Paragraph {i} is about the boiling point of water." for i in range(10)]
    text = "\n\n".join(paras)
    chunks = split_by_tokens(text, count, 40)
    assert "".join(chunks) == text and len(chunks) > 1
    assert all(count(c) <= 40 for c in chunks)
    assert all(c.endswith("\n\n") or c == chunks[-1] for c in chunks)  # cut at paragraph ends
    assert reassemble([" a ", "", "b"]) == "a\n\nb"
    with pytest.raises(ValueError, match="budget"):
        split_by_tokens(text, count, 0)


def test_import_is_light():
    code = (
        "import sys, pipeline.rephrase, pipeline.rephrase.stages, pipeline.rephrase.engines\n"
        "heavy = [m for m in ('vllm', 'torch', 'transformers', 'httpx') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "from pipeline.stages.base import STAGES\n"
        "assert {'rephrase', 'score', 'quality_classifier'} <= set(STAGES)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_vllm_engine_without_vllm_is_a_named_error():
    pytest.importorskip("torch")
    try:
        import vllm  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("vllm is installed here; this checks the message when it is not")
    from pipeline.rephrase import EngineRequestError, VLLMEngineConfig, build_engine

    with pytest.raises(EngineRequestError, match=r"trinity-data\[gpu\]"):
        build_engine(VLLMEngineConfig(model="m"))


def test_vllm_kwargs_carry_every_knob():
    from pipeline.rephrase import VLLMEngineConfig
    from pipeline.rephrase.engines.vllm_engine import vllm_llm_kwargs

    cfg = VLLMEngineConfig(model="m", tensor_parallel_size=2, gpu_memory_utilization=0.8, max_model_len=4096,
                           max_num_seqs=512, max_num_batched_tokens=16384, seed=5, engine_kwargs={"swap_space": 0})
    kw = vllm_llm_kwargs(cfg)
    assert kw["tensor_parallel_size"] == 2 and kw["gpu_memory_utilization"] == 0.8 and kw["max_model_len"] == 4096
    assert kw["max_num_seqs"] == 512 and kw["max_num_batched_tokens"] == 16384 and kw["seed"] == 5
    assert kw["distributed_executor_backend"] == "mp" and kw["swap_space"] == 0
    assert "max_model_len" not in vllm_llm_kwargs(VLLMEngineConfig(model="m"))


def test_cli_styles_and_train_classifier(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    from typer.testing import CliRunner

    from jobs.cli import app
    from pipeline.rephrase import HashedNgramClassifier

    runner = CliRunner()
    res = runner.invoke(app, ["rephrase", "styles"])
    assert res.exit_code == 0 and "knowledge_list" in res.output
    res = runner.invoke(app, ["rephrase", "styles", "--show", "nope"])
    assert res.exit_code == 2 and "unknown rephrase style" in res.output

    texts = [f"chapter {i}: proofs by induction, with exercises" for i in range(20)] + [f"sale {i}!!! buy now" for i in range(20)]
    pq.write_table(pa.table({"text": texts, "quality": [4.0] * 20 + [1.0] * 20}), tmp_path / "scored.parquet")
    out = tmp_path / "clf.npz"
    res = runner.invoke(app, ["rephrase", "train-classifier", str(tmp_path), "--out", str(out), "--dim-bits", "12", "--epochs", "50"])
    assert res.exit_code == 0, res.output
    assert '"n_train": 36' in res.output
    assert HashedNgramClassifier.load(out).predict(["induction proofs chapter"])[0] > 2.5
