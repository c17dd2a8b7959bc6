"""Engines on CPU: transformers on a tiny random model, openai against a real loopback HTTP server."""

from __future__ import annotations

import threading
import time

import pytest

from pipeline.rephrase import (
    EngineDeadError,
    EngineTimeoutError,
    OpenAIEngineConfig,
    SamplingConfig,
    TransformersEngineConfig,
    build_engine,
)
from pipeline.rephrase._resilient import ResilientEngine
from pipeline.rephrase.engines.base import FINISH_ERROR, FINISH_LENGTH


@pytest.fixture(scope="module")
def hf_engine(tiny_model):
    engine = build_engine(TransformersEngineConfig(model=str(tiny_model), device="cpu", batch_size=4))
    yield engine
    engine.close()


def test_transformers_engine_generates_in_order_with_finish_reasons(hf_engine):
    prompts = ["The fox", [{"role": "user", "content": "Rewrite: water boils."}], "Der Hund", "x"]
    gens = hf_engine.generate(prompts, SamplingConfig(max_tokens=12, seed=3))
    assert len(gens) == 4
    for g in gens:
        assert g.finish_reason in ("stop", "length")
        assert 0 <= g.completion_tokens <= 12
        assert g.prompt_tokens > 0
        if g.finish_reason == FINISH_LENGTH:
            assert g.completion_tokens == 12
    # same seed, same batch -> same text
    again = hf_engine.generate(prompts, SamplingConfig(max_tokens=12, seed=3))
    assert [g.text for g in gens] == [g.text for g in again]
    assert hf_engine.context_length == 512
    assert hf_engine.count_tokens("hello world") > 0


def test_transformers_engine_greedy_is_deterministic_and_stops(hf_engine):
    s = SamplingConfig(temperature=0.0, max_tokens=8, stop=["\n"])
    a = hf_engine.generate(["hello"], s)[0]
    b = hf_engine.generate(["hello"], s)[0]
    assert a.text == b.text and "\n" not in a.text


def test_resilient_engine_times_out_with_a_named_error(tiny_model):
    cfg = TransformersEngineConfig(model=str(tiny_model), device="cpu", timeout_s=0.02)
    eng = ResilientEngine(cfg, max_engine_restarts=1)
    eng.engine  # load outside the timed part
    t0 = time.monotonic()
    with pytest.raises(EngineTimeoutError, match="did not finish within"):
        eng.generate(["a", "b", "c", "d"], SamplingConfig(max_tokens=400, temperature=1.0))
    assert time.monotonic() - t0 < 30
    assert eng.restarts == 1
    # the abandoned generate threads share torch's global RNG: let them finish before other tests sample
    for t in threading.enumerate():
        if t.name == "engine-generate":
            t.join(timeout=120)


def test_openai_engine_against_loopback_server(hf_engine, scripted_server, monkeypatch):
    srv = scripted_server(hf_engine, api_key="sekret")
    monkeypatch.setenv("TRINITY_TEST_KEY", "sekret")
    cfg = OpenAIEngineConfig(model="tiny", base_url=srv.base_url, api_key_env="TRINITY_TEST_KEY", max_concurrency=2)
    eng = build_engine(cfg)
    try:
        gens = eng.generate(["The fox", "Water"], SamplingConfig(max_tokens=6, seed=1))
        assert [g.finish_reason in ("stop", "length") for g in gens] == [True, True]
        assert all(g.completion_tokens <= 6 for g in gens)
        # same seed through HTTP as in-process: the server seeds per request
        direct = hf_engine.generate(["The fox"], SamplingConfig(max_tokens=6, seed=1), [1])[0]
        assert gens[0].text == direct.text
    finally:
        eng.close()
    # a wrong key is a 401: not retried, reported on the row
    monkeypatch.setenv("TRINITY_TEST_KEY", "wrong")
    eng = build_engine(cfg)
    try:
        g = eng.generate(["x"], SamplingConfig(max_tokens=2))[0]
        assert g.finish_reason == FINISH_ERROR and "401" in g.extra["error"]
    finally:
        eng.close()


def test_openai_engine_retries_500s_and_timeouts(scripted_server):
    srv = scripted_server(fail_first=2)
    cfg = OpenAIEngineConfig(model="s", base_url=srv.base_url, api_key_env=None, max_retries=3, backoff_s=0.01, max_concurrency=1)
    eng = build_engine(cfg)
    try:
        g = eng.generate(["TEXT:\nhello\n\nOUT:"], SamplingConfig())[0]
        assert g.text == "HELLO" and srv.requests == 3
    finally:
        eng.close()

    slow = scripted_server(delay_first=1, delay_s=1.5)
    cfg = OpenAIEngineConfig(
        model="s", base_url=slow.base_url, api_key_env=None, max_retries=2, backoff_s=0.01, request_timeout_s=0.5
    )
    eng = build_engine(cfg)
    try:
        g = eng.generate(["TEXT:\nslow\n\nOUT:"], SamplingConfig())[0]
        assert g.text == "SLOW" and slow.requests == 2  # first timed out, retry answered
    finally:
        eng.close()


def test_openai_engine_row_failure_and_dead_endpoint(scripted_server):
    srv = scripted_server(fail_marker="POISON")
    cfg = OpenAIEngineConfig(model="s", base_url=srv.base_url, api_key_env=None, max_retries=1, backoff_s=0.01, endpoint="chat")
    eng = build_engine(cfg)
    try:
        gens = eng.generate(["TEXT:\nok\n\nOUT:", "TEXT:\nPOISON\n\nOUT:"], SamplingConfig())
        assert gens[0].text == "OK"
        assert gens[1].finish_reason == FINISH_ERROR and "500" in gens[1].extra["error"]
    finally:
        eng.close()

    port = srv._httpd.server_address[1]
    srv.stop()  # nothing listens there any more
    dead = build_engine(
        OpenAIEngineConfig(model="s", base_url=f"http://127.0.0.1:{port}/v1", api_key_env=None, max_retries=1, backoff_s=0.01)
    )
    t0 = time.monotonic()
    try:
        with pytest.raises(EngineDeadError, match="unreachable"):
            dead.generate(["a", "b"], SamplingConfig())
    finally:
        dead.close()
    assert time.monotonic() - t0 < 10


def test_engine_build_failures_are_named_not_row_rejections(tmp_path):
    from pipeline.rephrase import EngineOOMError, EngineRequestError
    from pipeline.rephrase.engines import Engine

    with pytest.raises(EngineRequestError, match="cannot load model"):
        ResilientEngine(TransformersEngineConfig(model=str(tmp_path / "missing"), device="cpu")).generate(["a", "b"], SamplingConfig())

    builds = []

    def oom_factory(cfg):
        builds.append(1)
        raise EngineOOMError("vllm", "CUDA out of memory while loading")

    eng = ResilientEngine(TransformersEngineConfig(model="m"), max_engine_restarts=2, factory=oom_factory)
    with pytest.raises(EngineOOMError):
        eng.generate(["a", "b", "c"], SamplingConfig())
    assert len(builds) == 3  # first build + 2 restarts, then the named error

    class FlakyEngine(Engine):
        backend = "flaky"
        calls = 0

        def _generate(self, prompts, sampling, seeds):
            FlakyEngine.calls += 1
            if any("bad" in p for p in prompts):
                raise RuntimeError("CUDA out of memory")  # classified as OOM -> restart + bisect
            return [__import__("pipeline.rephrase.engines", fromlist=["Generation"]).Generation(p.upper(), "stop") for p in prompts]

    eng = ResilientEngine(TransformersEngineConfig(model="m"), max_engine_restarts=5, factory=FlakyEngine)
    out = eng.generate(["a", "b", "bad", "c"], SamplingConfig())
    assert [g.text for g in out[:2]] + [out[3].text] == ["A", "B", "C"]
    assert out[2].finish_reason == FINISH_ERROR and "out of memory" in out[2].extra["error"]
