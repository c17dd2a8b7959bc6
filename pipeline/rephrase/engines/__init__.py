"""Generation engines: one interface (:class:`Engine`), three backends.

=============== ============================================================
``transformers`` ``AutoModelForCausalLM.generate`` in batches, CPU or GPU:
                 development, tests, small models.
``openai``       any OpenAI-compatible HTTP endpoint (``vllm serve``, a hosted
                 API, :mod:`pipeline.rephrase.serve`): bounded concurrency,
                 retries with backoff, timeouts.
``vllm``         ``vllm.LLM`` inside a Ray Data actor (one per GPU or per
                 tensor-parallel group): production throughput.
=============== ============================================================

Configs are a pydantic discriminated union on ``backend``; nothing heavy
(torch, transformers, vllm, httpx) is imported until :func:`build_engine` runs.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field

from .base import FINISH_ERROR, FINISH_LENGTH, FINISH_STOP, Engine, Generation, Prompt, SamplingConfig


class _EngineConfigBase(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model: str = Field(description="model path (or hub id / served model name)")
    tokenizer: Optional[str] = Field(None, description="tokenizer path when it differs from the model's")
    context_length: Optional[int] = Field(None, ge=16, description="override the model's context length (tokens)")
    use_chat_template: Optional[bool] = Field(
        None, description="None: use the tokenizer's chat template when it has one; false: plain text prompts"
    )
    timeout_s: float = Field(600.0, gt=0, description="a generate call longer than this is a hung engine")


class TransformersEngineConfig(_EngineConfigBase):
    """``transformers`` backend."""

    backend: Literal["transformers"] = "transformers"
    device: str = Field("auto", description="auto | cpu | cuda | cuda:N")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    batch_size: int = Field(8, ge=1, description="prompts per generate() call")
    num_threads: Optional[int] = Field(None, ge=1, description="torch CPU threads (None: torch default)")


class OpenAIEngineConfig(_EngineConfigBase):
    """``openai`` backend (OpenAI-compatible HTTP endpoint)."""

    backend: Literal["openai"] = "openai"
    base_url: str = Field(description="e.g. http://127.0.0.1:8000/v1")
    endpoint: Literal["completions", "chat"] = "completions"
    api_key_env: Optional[str] = Field("OPENAI_API_KEY", description="environment variable holding the API key")
    max_concurrency: int = Field(16, ge=1, description="requests in flight at once")
    request_timeout_s: float = Field(120.0, gt=0)
    max_retries: int = Field(4, ge=0, description="retries per request on 5xx, 429, timeouts, connection errors")
    backoff_s: float = Field(0.5, ge=0, description="first retry delay; doubles each retry (with jitter)")
    backoff_max_s: float = Field(30.0, ge=0)


class VLLMEngineConfig(_EngineConfigBase):
    """``vllm`` backend: a ``vllm.LLM`` per actor. Every knob of ``LLM(...)`` used in production is here;
    anything else goes through ``engine_kwargs``."""

    backend: Literal["vllm"] = "vllm"
    tensor_parallel_size: int = Field(1, ge=1)
    pipeline_parallel_size: int = Field(1, ge=1)
    gpu_memory_utilization: float = Field(0.9, gt=0.0, le=1.0)
    max_model_len: Optional[int] = Field(None, ge=16)
    max_num_seqs: Optional[int] = Field(None, ge=1)
    max_num_batched_tokens: Optional[int] = Field(None, ge=16)
    dtype: str = "auto"
    enforce_eager: bool = False
    enable_prefix_caching: Optional[bool] = None
    seed: int = 0
    engine_kwargs: dict[str, Any] = Field(default_factory=dict, description="passed to vllm.LLM as is")


EngineConfig = Annotated[
    Union[TransformersEngineConfig, OpenAIEngineConfig, VLLMEngineConfig], Field(discriminator="backend")
]


def build_engine(config: Any) -> Engine:
    """Instantiate the engine for ``config`` (imports the backend's heavy dependencies here).

    >>> from pipeline.rephrase.engines import TransformersEngineConfig
    >>> cfg = TransformersEngineConfig(model="path/to/model")  # doctest: +SKIP
    >>> engine = build_engine(cfg)                              # doctest: +SKIP
    """
    if isinstance(config, TransformersEngineConfig):
        from .transformers_engine import TransformersEngine

        return TransformersEngine(config)
    if isinstance(config, OpenAIEngineConfig):
        from .openai_engine import OpenAIEngine

        return OpenAIEngine(config)
    if isinstance(config, VLLMEngineConfig):
        from .vllm_engine import VLLMEngine

        return VLLMEngine(config)
    raise TypeError(f"not an engine config: {type(config).__name__}")


__all__ = [
    "Engine",
    "EngineConfig",
    "FINISH_ERROR",
    "FINISH_LENGTH",
    "FINISH_STOP",
    "Generation",
    "OpenAIEngineConfig",
    "Prompt",
    "SamplingConfig",
    "TransformersEngineConfig",
    "VLLMEngineConfig",
    "build_engine",
]
