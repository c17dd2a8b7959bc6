"""A tiny random-initialised causal LM with a byte-level BPE tokenizer, built offline.

Tests, the CPU benchmark and demos need a model that every engine can load
without downloading weights. :func:`make_tiny_model` trains a small byte-level
BPE (HF ``tokenizers``) on a built-in multilingual snippet corpus plus any texts
given, and saves a Llama-architecture model of a few hundred thousand parameters
with random weights next to it. Its outputs are noise; its shapes, tokenizer,
special tokens and generation path are real.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Optional

EOS = "<|endoftext|>"

_SEED_TEXTS = [
    "The quick brown fox jumps over the lazy dog. Water boils at 100 degrees Celsius at sea level.",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "def add(a, b):\n    return a + b\n\nfor i in range(10):\n    print(add(i, i))\n",
    "func main() {\n\tfmt.Println(\"hello, world\")\n}\n",
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "Le renard brun rapide saute par-dessus le chien paresseux.",
    "Быстрая коричневая лиса прыгает через ленивую собаку.",
    "敏捷的棕色狐狸跳过了懒狗。水在海平面一百度沸腾。",
    "Question: What is 2 + 2? Answer: 2 + 2 = 4. Educational score: 3",
]


def make_tiny_model(
    out_dir: str | Path,
    *,
    texts: Optional[Iterable[str]] = None,
    vocab_size: int = 512,
    hidden_size: int = 64,
    num_layers: int = 2,
    context_length: int = 1024,
    seed: int = 0,
) -> Path:
    """Write a tokenizer and a random Llama model loadable by ``AutoModelForCausalLM`` to ``out_dir``.

    Args:
        out_dir: target folder (created).
        texts: extra tokenizer training texts (the built-in snippets are always included).
        vocab_size: BPE vocabulary size including the 256 byte symbols.
        hidden_size: model width; heads are ``hidden_size // 32``.
        num_layers: transformer blocks.
        context_length: ``max_position_embeddings`` and the tokenizer's ``model_max_length``.
        seed: torch seed for the random weights.

    Returns:
        ``out_dir`` as a ``Path``.
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    corpus = list(_SEED_TEXTS) * 4 + list(texts or [])
    tok.train_from_iterator(corpus, trainer=trainer)
    hf_tok = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token=EOS, pad_token=EOS, bos_token=EOS, model_max_length=context_length
    )
    hf_tok.save_pretrained(out)

    eos_id = hf_tok.convert_tokens_to_ids(EOS)
    heads = max(1, hidden_size // 32)
    cfg = LlamaConfig(
        vocab_size=len(hf_tok),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=num_layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=context_length,
        bos_token_id=eos_id,
        eos_token_id=eos_id,
        pad_token_id=eos_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(cfg)
    model.save_pretrained(out)
    (out / "tiny_model.json").write_text(
        json.dumps({"params": sum(p.numel() for p in model.parameters()), "vocab": len(hf_tok), "seed": seed})
    )
    return out
