"""The ``vllm`` backend: one ``vllm.LLM`` per Ray Data actor.

The rephrase stage runs in a ``map_batches`` actor pool (``num_gpus`` per actor =
``tensor_parallel_size * pipeline_parallel_size``); each actor builds this engine
once and calls ``LLM.generate`` on whole batches, so vLLM's scheduler does
continuous batching over every prompt of the batch. Tensor parallelism inside
one actor uses vLLM's multiprocessing executor over the GPUs Ray assigned to the
actor (``CUDA_VISIBLE_DEVICES``), so no extra placement group is needed.

``vllm`` is imported here only, so the package works without the ``gpu`` extra.
"""

from __future__ import annotations

import logging
import time

from ..errors import EngineRequestError, classify_exception
from .base import FINISH_LENGTH, FINISH_STOP, Engine, Generation, Prompt, SamplingConfig

logger = logging.getLogger(__name__)


def vllm_llm_kwargs(config) -> dict:
    """``vllm.LLM(**kwargs)`` for a :class:`~pipeline.rephrase.engines.VLLMEngineConfig` (also used by the benchmark)."""
    kw = dict(
        model=config.model,
        tokenizer=config.tokenizer or config.model,
        tensor_parallel_size=config.tensor_parallel_size,
        pipeline_parallel_size=config.pipeline_parallel_size,
        gpu_memory_utilization=config.gpu_memory_utilization,
        dtype=config.dtype,
        seed=config.seed,
        enforce_eager=config.enforce_eager,
    )
    for key in ("max_model_len", "max_num_seqs", "max_num_batched_tokens", "enable_prefix_caching"):
        value = getattr(config, key)
        if value is not None:
            kw[key] = value
    if config.tensor_parallel_size * config.pipeline_parallel_size > 1:
        # inside one Ray actor that already holds the GPUs: spawn workers locally
        kw.setdefault("distributed_executor_backend", "mp")
    kw.update(config.engine_kwargs)
    return kw


def vllm_sampling_params(sampling: SamplingConfig, seed: int | None = None):
    """A ``vllm.SamplingParams`` equal to ``sampling`` (per-request ``seed``)."""
    from vllm import SamplingParams

    kw = dict(
        temperature=sampling.temperature,
        top_p=sampling.top_p,
        max_tokens=sampling.max_tokens,
        repetition_penalty=sampling.repetition_penalty,
        ignore_eos=sampling.ignore_eos,
        seed=sampling.seed if seed is None else seed,
    )
    if sampling.top_k > 0:  # leave "disabled" to vLLM's own default (its sentinel changed from -1 to 0 over versions)
        kw["top_k"] = sampling.top_k
    if sampling.stop:
        kw["stop"] = list(sampling.stop)
    return SamplingParams(**kw)


class VLLMEngine(Engine):
    """Offline generation with ``vllm.LLM``.

    Args:
        config: a :class:`~pipeline.rephrase.engines.VLLMEngineConfig`.

    Raises:
        EngineRequestError: ``vllm`` is not installed (``pip install trinity-data[gpu]``).
        EngineOOMError: the model or its KV cache does not fit the GPU.
    """

    backend = "vllm"

    def __init__(self, config):
        super().__init__(config)
        try:
            from vllm import LLM
        except ImportError as exc:
            raise EngineRequestError(
                self.backend, f"vllm is not importable ({exc}); install the gpu extra: pip install 'trinity-data[gpu]'"
            ) from exc
        t0 = time.perf_counter()
        try:
            self._llm = LLM(**vllm_llm_kwargs(config))
        except Exception as exc:
            raise classify_exception(self.backend, exc) from exc
        self._tok = self._llm.get_tokenizer()
        logger.info("vllm engine for %s ready in %.1fs", config.model, time.perf_counter() - t0)

    def _model_context_length(self) -> int:
        return int(self._llm.llm_engine.vllm_config.model_config.max_model_len)

    def _generate(self, prompts: list[Prompt], sampling: SamplingConfig, seeds: list[int] | None) -> list[Generation]:
        texts = [self.render(p) for p in prompts]
        params = [vllm_sampling_params(sampling, s) for s in seeds] if seeds else vllm_sampling_params(sampling)
        try:
            outs = self._llm.generate(texts, params, use_tqdm=False)
        except Exception as exc:
            raise classify_exception(self.backend, exc) from exc
        gens = []
        for o in outs:
            c = o.outputs[0]
            gens.append(
                Generation(
                    text=c.text,
                    finish_reason=FINISH_LENGTH if c.finish_reason == "length" else FINISH_STOP,
                    prompt_tokens=len(o.prompt_token_ids or ()),
                    completion_tokens=len(c.token_ids),
                )
            )
        return gens

    def close(self) -> None:
        llm, self._llm = getattr(self, "_llm", None), None
        del llm
        try:
            import gc

            import torch

            gc.collect()
            torch.cuda.empty_cache()
        except Exception:  # best effort: the actor is usually about to be replaced
            pass
