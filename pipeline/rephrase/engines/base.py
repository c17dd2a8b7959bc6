"""The one engine interface every backend implements.

An engine turns prompts into :class:`Generation` objects. A prompt is either a
plain string or a list of chat messages (``[{"role": ..., "content": ...}]``);
:meth:`Engine.render` turns messages into the model's prompt text with its chat
template when the tokenizer has one, and into plain ``role: content`` text when
it does not (small base models in tests).

Engines are built lazily inside the worker that uses them (a Ray actor), never
pickled: stages hold the engine *config* and call :func:`build_engine` on first
use.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Sequence, Union

from pydantic import BaseModel, ConfigDict, Field

logger = logging.getLogger(__name__)

Message = dict[str, str]
Prompt = Union[str, list[Message]]

FINISH_STOP = "stop"
FINISH_LENGTH = "length"
FINISH_ERROR = "error"  # the request failed after its retries; see Generation.extra["error"]


class SamplingConfig(BaseModel):
    """Sampling parameters shared by every backend (names follow vLLM's ``SamplingParams``).

    ``seed`` is the run's base seed: each request gets its own seed derived from it
    and the row (see :func:`pipeline.rephrase.stages.derive_seed`), so outputs do not
    depend on how rows were batched (vLLM, openai); the transformers backend seeds
    each batch instead.
    """

    model_config = ConfigDict(extra="forbid")

    temperature: float = Field(0.7, ge=0.0)
    top_p: float = Field(0.95, gt=0.0, le=1.0)
    top_k: int = Field(-1, ge=-1, description="-1 disables top-k")
    max_tokens: int = Field(512, ge=1)
    repetition_penalty: float = Field(1.0, gt=0.0)
    stop: list[str] = Field(default_factory=list)
    ignore_eos: bool = Field(False, description="always generate max_tokens (benchmarks: fixed output length)")
    seed: int = 0


@dataclass
class Generation:
    """One completion.

    Attributes:
        text: the generated text (stop strings removed).
        finish_reason: ``"stop"`` (end of sequence or stop string) or ``"length"`` (hit ``max_tokens``).
        prompt_tokens: tokens in the prompt, as the engine counted them.
        completion_tokens: tokens generated.
    """

    text: str
    finish_reason: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


class Engine(ABC):
    """Base class of the engine backends.

    Subclasses implement :meth:`_generate` and set ``backend``; they store the model's
    Hugging Face tokenizer in ``_tok`` when they load one and may report the model's
    own context length through :meth:`_model_context_length`.
    """

    backend: str = "base"
    _tok: Any | None = None  # subclasses that load a tokenizer store it here

    def __init__(self, config: Any):
        self.config = config

    @property
    def model_name(self) -> str:
        return str(getattr(self.config, "model", self.backend))

    @property
    def tokenizer(self) -> Any | None:
        """The model's tokenizer (``encode``/``decode``), or ``None`` when unknown."""
        return self._tok

    def _model_context_length(self) -> int | None:
        """The context length the loaded model declares, when the backend knows it."""
        return None

    @property
    def context_length(self) -> int:
        """Tokens the model accepts, prompt and completion together."""
        override = getattr(self.config, "context_length", None)
        if override:
            return int(override)
        native = self._model_context_length()
        if native:
            return int(native)
        tok = self.tokenizer
        n = getattr(tok, "model_max_length", None) if tok is not None else None
        if isinstance(n, int) and 0 < n < 10_000_000:
            return n
        return 4096

    def count_tokens(self, text: str) -> int:
        """Number of tokens of ``text`` (about 4 characters a token when no tokenizer is known)."""
        tok = self.tokenizer
        if tok is None:
            return max(1, len(text) // 4)
        return len(tok.encode(text, add_special_tokens=False))

    def render(self, prompt: Prompt) -> str:
        """Prompt text for a string or a chat-message list (chat template if the tokenizer has one)."""
        if isinstance(prompt, str):
            return prompt
        tok = self.tokenizer
        use = getattr(self.config, "use_chat_template", None)
        has_template = tok is not None and getattr(tok, "chat_template", None)
        if has_template and use is not False:
            return tok.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
        if use is True:
            from .. import errors

            raise errors.EngineRequestError(self.backend, "use_chat_template is true but the tokenizer has no chat template")
        return "\n\n".join(m["content"] for m in prompt) + "\n\n"

    def generate(
        self, prompts: Sequence[Prompt], sampling: SamplingConfig, seeds: Sequence[int] | None = None
    ) -> list[Generation]:
        """Generate one completion per prompt, in order.

        Args:
            prompts: strings or chat-message lists.
            sampling: sampling parameters.
            seeds: optional per-prompt seeds (backends that cannot seed per request use the first).

        Raises:
            EngineError: (or a subclass) when the engine cannot serve the batch.
        """
        if seeds is not None and len(seeds) != len(prompts):
            raise ValueError(f"{len(seeds)} seeds for {len(prompts)} prompts")
        if not prompts:
            return []
        out = self._generate(list(prompts), sampling, list(seeds) if seeds is not None else None)
        if len(out) != len(prompts):
            from ..errors import EngineError

            raise EngineError(self.backend, f"returned {len(out)} generations for {len(prompts)} prompts")
        return out

    @abstractmethod
    def _generate(self, prompts: list[Prompt], sampling: SamplingConfig, seeds: list[int] | None) -> list[Generation]:
        """Backend-specific generation."""

    def close(self) -> None:
        """Release the model, connections and (GPU) memory."""


def cut_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """Truncate ``text`` at the first stop string; return the text and whether one was found."""
    cut = len(text)
    for s in stop:
        if s:
            i = text.find(s)
            if i != -1:
                cut = min(cut, i)
    return text[:cut], cut < len(text)
