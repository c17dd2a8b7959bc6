"""The ``transformers`` backend: batched ``model.generate`` on CPU or GPU.

Meant for development, tests and small models. Prompts are left-padded and run
``batch_size`` at a time; one torch seed per batch (``seeds[0]``), so results
depend on batching, unlike the ``vllm`` and ``openai`` backends.
"""

from __future__ import annotations

import logging

from ..errors import EngineRequestError, classify_exception
from .base import FINISH_LENGTH, FINISH_STOP, Engine, Generation, Prompt, SamplingConfig, cut_at_stop

logger = logging.getLogger(__name__)


class TransformersEngine(Engine):
    """Generation with ``transformers.AutoModelForCausalLM``.

    Args:
        config: a :class:`~pipeline.rephrase.engines.TransformersEngineConfig`.
    """

    backend = "transformers"

    def __init__(self, config):
        super().__init__(config)
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if config.num_threads:
            torch.set_num_threads(config.num_threads)
        device = config.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self._device = device
        dtype = {"auto": "auto", "float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[
            config.dtype
        ]
        try:
            self._tok = AutoTokenizer.from_pretrained(config.tokenizer or config.model)
            self._model = AutoModelForCausalLM.from_pretrained(config.model, dtype=dtype).to(device).eval()
        except OSError as exc:
            raise EngineRequestError(self.backend, f"cannot load model {config.model!r}: {exc}") from exc
        except Exception as exc:  # OOM while loading, bad weights...
            raise classify_exception(self.backend, exc) from exc
        self._tok.padding_side = "left"
        if self._tok.pad_token_id is None:
            self._tok.pad_token = self._tok.eos_token
        self._torch = torch

    def _model_context_length(self) -> int | None:
        return getattr(self._model.config, "max_position_embeddings", None)

    def _generate(self, prompts: list[Prompt], sampling: SamplingConfig, seeds: list[int] | None) -> list[Generation]:
        torch = self._torch
        texts = [self.render(p) for p in prompts]
        out: list[Generation] = []
        bs = self.config.batch_size
        try:
            for start in range(0, len(texts), bs):
                batch = texts[start : start + bs]
                seed = (seeds[start] if seeds else sampling.seed) & 0x7FFFFFFF
                torch.manual_seed(seed)
                out.extend(self._generate_batch(batch, sampling))
        except Exception as exc:
            raise classify_exception(self.backend, exc) from exc
        return out

    def _generate_batch(self, texts: list[str], sampling: SamplingConfig) -> list[Generation]:
        torch = self._torch
        enc = self._tok(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(self._device)
        prompt_len = enc["input_ids"].shape[1]
        limit = self.context_length - prompt_len
        if limit < 1:
            raise EngineRequestError(self.backend, f"prompt of {prompt_len} tokens leaves no room in a {self.context_length}-token context")
        max_new = min(sampling.max_tokens, limit)
        sample = sampling.temperature > 0
        kwargs = dict(
            max_new_tokens=max_new,
            do_sample=sample,
            pad_token_id=self._tok.pad_token_id,
            eos_token_id=self._tok.eos_token_id,
            repetition_penalty=sampling.repetition_penalty,
        )
        if sampling.ignore_eos:
            kwargs["min_new_tokens"] = max_new
        if sample:
            kwargs.update(temperature=sampling.temperature, top_p=sampling.top_p, top_k=max(sampling.top_k, 0))
        with torch.inference_mode():
            seqs = self._model.generate(**enc, **kwargs)
        new = seqs[:, prompt_len:]
        eos = self._tok.eos_token_id
        gens = []
        for i in range(len(texts)):
            ids = new[i].tolist()
            n = len(ids)
            hit_eos = False
            if sampling.ignore_eos:
                pass
            elif eos is not None and eos in ids:
                n = ids.index(eos)
                hit_eos = True
            elif self._tok.pad_token_id is not None and self._tok.pad_token_id in ids:
                n = ids.index(self._tok.pad_token_id)
                hit_eos = True
            text = self._tok.decode(ids[:n], skip_special_tokens=True)
            text, stopped = cut_at_stop(text, sampling.stop)
            finish = FINISH_STOP if (hit_eos or stopped or n < max_new) else FINISH_LENGTH
            prompt_tokens = int(enc["attention_mask"][i].sum())
            gens.append(Generation(text=text, finish_reason=finish, prompt_tokens=prompt_tokens, completion_tokens=n))
        return gens

    def close(self) -> None:
        self._model = None
        if self._device.startswith("cuda"):
            self._torch.cuda.empty_cache()
