"""The vllm engine on a real GPU (skipped where there is no CUDA device or no vllm)."""

from __future__ import annotations

import importlib.util

import pyarrow as pa
import pytest


def _cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vllm is not installed (the gpu extra)"),
    pytest.mark.skipif(not _cuda(), reason="needs a CUDA GPU"),
]


def test_vllm_engine_and_stage_on_tiny_model(tiny_model):
    from pipeline.rephrase import RephraseConfig, RephraseStage, SamplingConfig, VLLMEngineConfig, build_engine

    cfg = VLLMEngineConfig(model=str(tiny_model), gpu_memory_utilization=0.3, max_model_len=512, enforce_eager=True)
    engine = build_engine(cfg)
    try:
        gens = engine.generate(["The fox", "Water"], SamplingConfig(max_tokens=8, ignore_eos=True), [1, 2])
        assert [g.completion_tokens for g in gens] == [8, 8]
        assert all(g.finish_reason == "length" for g in gens)
        again = engine.generate(["The fox"], SamplingConfig(max_tokens=8, ignore_eos=True), [1])
        assert again[0].text == gens[0].text  # per-request seed: independent of the batch
        assert engine.context_length == 512
    finally:
        engine.close()

    stage = RephraseStage(RephraseConfig(engine=cfg.model_dump(), sampling={"max_tokens": 8},
                                         validation={"reject_truncated": False, "check_language": False,
                                                     "check_length_ratio": False, "check_repetition": False}))
    assert stage.ray_map_kwargs()["num_gpus"] == 1.0
    table = pa.table({"id": ["a", "b"], "text": ["Water boils at 100 C.", "Der Hund bellt."], "lang": ["en", "de"]})
    res = stage.process(table)
    assert res.kept.num_rows + res.rejected.num_rows == 2
