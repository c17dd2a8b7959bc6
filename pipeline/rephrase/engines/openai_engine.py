"""The ``openai`` backend: any OpenAI-compatible HTTP endpoint.

Works against ``vllm serve``, hosted APIs and :mod:`pipeline.rephrase.serve`.
Requests run on a thread pool of ``max_concurrency`` workers with a shared
``httpx.Client`` (connection pooling); each request is retried on 429, 5xx,
timeouts and connection errors with exponential backoff and jitter, and fails
fast on other 4xx. The API key is read from the environment variable named by
``api_key_env`` when the engine is built, never stored in configs.

A request that still fails after its retries yields a ``Generation`` with
``finish_reason="error"`` and the error in ``extra["error"]``: the rest of the
batch is kept. When *every* request of a batch fails to connect the endpoint is
considered dead and :class:`~pipeline.rephrase.errors.EngineDeadError` is raised.
"""

from __future__ import annotations

import logging
import os
import random
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ...redact import redact_text, redact_url, split_userinfo
from ..errors import EngineDeadError, EngineError
from .base import FINISH_ERROR, FINISH_LENGTH, FINISH_STOP, Engine, Generation, Prompt, SamplingConfig

logger = logging.getLogger(__name__)

_RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


class _RequestFailed(Exception):
    def __init__(self, message: str, transport: bool):
        super().__init__(message)
        self.transport = transport


class OpenAIEngine(Engine):
    """Client of an OpenAI-compatible ``/v1/completions`` or ``/v1/chat/completions`` endpoint.

    Args:
        config: an :class:`~pipeline.rephrase.engines.OpenAIEngineConfig`.
    """

    backend = "openai"

    def __init__(self, config):
        super().__init__(config)
        import httpx

        self._httpx = httpx
        headers = {"Content-Type": "application/json"}
        if config.api_key_env:
            key = os.environ.get(config.api_key_env)
            if key:
                headers["Authorization"] = f"Bearer {key}"
            else:
                logger.info("openai engine: %s is not set; sending no API key", config.api_key_env)
        limits = httpx.Limits(max_connections=config.max_concurrency, max_keepalive_connections=config.max_concurrency)
        # Credentials in the URL travel as basic auth, so no request URL (httpx logs them) carries them.
        base_url, auth = split_userinfo(config.base_url.rstrip("/"))
        self._where = redact_url(config.base_url)
        self._client = httpx.Client(
            base_url=base_url, headers=headers, auth=auth, timeout=config.request_timeout_s, limits=limits
        )
        self._pool = ThreadPoolExecutor(max_workers=config.max_concurrency, thread_name_prefix="openai-engine")
        self._tok = None
        if config.tokenizer:
            from transformers import AutoTokenizer

            self._tok = AutoTokenizer.from_pretrained(config.tokenizer)

    def render(self, prompt: Prompt) -> str:
        if isinstance(prompt, str) or self._tok is not None:
            return super().render(prompt)
        return "\n\n".join(m["content"] for m in prompt) + "\n\n"

    def _payload(self, prompt: Prompt, sampling: SamplingConfig, seed: int) -> tuple[str, dict[str, Any]]:
        body: dict[str, Any] = {
            "model": self.config.model,
            "max_tokens": sampling.max_tokens,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "seed": seed,
        }
        if sampling.stop:
            body["stop"] = sampling.stop
        if sampling.top_k > 0:  # vLLM extension
            body["top_k"] = sampling.top_k
        if sampling.ignore_eos:  # vLLM extension
            body["ignore_eos"] = True
        if sampling.repetition_penalty != 1.0:  # vLLM extension
            body["repetition_penalty"] = sampling.repetition_penalty
        if self.config.endpoint == "chat":
            messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
            body["messages"] = messages
            return "/chat/completions", body
        body["prompt"] = self.render(prompt)
        return "/completions", body

    def _one(self, prompt: Prompt, sampling: SamplingConfig, seed: int) -> Generation:
        httpx = self._httpx
        cfg = self.config
        path, body = self._payload(prompt, sampling, seed)
        last: _RequestFailed | None = None
        for attempt in range(cfg.max_retries + 1):
            if attempt:
                delay = min(cfg.backoff_max_s, cfg.backoff_s * 2 ** (attempt - 1))
                time.sleep(delay * (0.5 + random.random() / 2))
            try:
                resp = self._client.post(path, json=body)
            except httpx.TimeoutException as exc:
                last = _RequestFailed(f"timeout after {cfg.request_timeout_s}s ({type(exc).__name__})", transport=False)
                continue
            except httpx.TransportError as exc:
                last = _RequestFailed(redact_text(f"connection error: {type(exc).__name__}: {exc}"), transport=True)
                continue
            if resp.status_code in _RETRY_STATUS:
                last = _RequestFailed(redact_text(f"HTTP {resp.status_code}: {resp.text[:200]}"), transport=False)
                continue
            if resp.status_code >= 400:
                raise _RequestFailed(redact_text(f"HTTP {resp.status_code}: {resp.text[:200]}"), transport=False)
            try:
                return self._parse(resp.json())
            except (ValueError, KeyError, IndexError, TypeError) as exc:
                last = _RequestFailed(f"malformed response: {type(exc).__name__}: {exc}", transport=False)
        assert last is not None
        raise _RequestFailed(f"{last} (after {cfg.max_retries} retries)", last.transport)

    def _parse(self, data: dict[str, Any]) -> Generation:
        choice = data["choices"][0]
        if self.config.endpoint == "chat":
            text = choice["message"]["content"] or ""
        else:
            text = choice["text"]
        finish = choice.get("finish_reason") or FINISH_STOP
        finish = FINISH_LENGTH if finish == "length" else FINISH_STOP
        usage = data.get("usage") or {}
        return Generation(
            text=text,
            finish_reason=finish,
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
        )

    def _generate(self, prompts: list[Prompt], sampling: SamplingConfig, seeds: list[int] | None) -> list[Generation]:
        seeds = seeds or [sampling.seed] * len(prompts)
        futures = [self._pool.submit(self._one, p, sampling, s) for p, s in zip(prompts, seeds)]
        out: list[Generation] = []
        transport_failures = 0
        for fut in futures:
            try:
                out.append(fut.result())
            except _RequestFailed as exc:
                transport_failures += exc.transport
                out.append(Generation(text="", finish_reason=FINISH_ERROR, extra={"error": str(exc)}))
            except Exception as exc:  # a bug, not the endpoint: name it
                raise EngineError(self.backend, redact_text(f"{type(exc).__name__}: {exc}")) from exc
        if transport_failures == len(prompts):
            raise EngineDeadError(self.backend, f"{self._where} unreachable: {out[0].extra['error']}")
        return out

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._client.close()
