"""Typed training configuration, validated before any work starts."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from common.errors import ConfigError
from common.config import validation_message

from .pretokenize import SPECIAL_TOKENS, forced_digit_strings, uses_digit_groups

#: Token ids a vocabulary needs before any learned merge: the special tokens and
#: the 256 single bytes.
BASE_VOCAB = len(SPECIAL_TOKENS) + 256


class CorpusConfig(BaseModel):
    """Where training text comes from and how it is sampled.

    Args:
        inputs: files, folders or globs, local or any fsspec URI (``s3://...``).
            Parquet/Arrow/Feather shards (a text column), JSONL (optionally
            ``.zst``/``.gz``) or plain text.
        text_field, lang_field, source_field, id_field: column / JSON key names;
            a missing ``lang``/``source`` reads as ``unknown``.
        lang_weights, source_weights: sampling weights per language / source
            (both multiply; unlisted keys weigh 1.0). ``0.5`` keeps half the
            documents, ``2.5`` repeats each document twice or three times.
        max_bytes: stop after this many UTF-8 bytes of (sampled) training text.
        holdout_fraction: fraction of documents kept out of training, chosen by a
            hash of the document id (or text), so ``eval --split heldout`` with the
            same fraction and seed sees exactly the held-out documents.
        seed: seed of the hash used for sampling and the held-out split.
    """

    model_config = ConfigDict(extra="forbid")

    inputs: list[str] = Field(min_length=1)
    text_field: str = "text"
    lang_field: str = "lang"
    source_field: str = "source"
    id_field: str = "id"
    lang_weights: dict[str, float] = Field(default_factory=dict)
    source_weights: dict[str, float] = Field(default_factory=dict)
    max_bytes: int | None = Field(default=None, gt=0)
    holdout_fraction: float = Field(default=0.0, ge=0.0, lt=1.0)
    seed: int = 0

    @field_validator("lang_weights", "source_weights")
    @classmethod
    def _non_negative(cls, v: dict[str, float]) -> dict[str, float]:
        bad = {k: w for k, w in v.items() if not w >= 0}
        if bad:
            raise ValueError(f"weights must be >= 0, got {bad}")
        return v


class TrainConfig(CorpusConfig):
    """Everything :func:`tokenizer.train` needs.

    Args:
        vocab_size: exact size of the final vocabulary, special tokens included.
        pretokenizer: ``trinity`` (place-aligned digits, script isolation with
            Han, Hiragana and Katakana one class "CJK"), ``trinity_strict`` (the
            same with Han, Hiragana and Katakana apart) or ``gpt4o`` (the o200k
            regex; the baseline for comparisons).
        min_frequency: a pair seen fewer times is never merged.
        max_token_length: longest token in characters of the byte alphabet (None:
            no limit).
        route: ``direct`` streams text into the `tokenizers` trainer (one process,
            multi-threaded); ``counts`` counts pre-tokens in parallel worker
            processes (or Ray tasks), merges and prunes the counts in memory, then
            trains on the counts; ``sharded`` (corpora larger than memory) counts
            in worker processes that spill sorted runs to disk, merges them
            streaming, prunes to ``min_count``/``max_words``/``max_memory`` and
            trains on what is kept (:mod:`tokenizer.sharded`): peak memory follows
            the distinct pre-tokens kept, not the corpus.
        backend: ``processes`` (a local process pool) or ``ray`` (tasks on the
            current Ray cluster) for the counts route.
        workers: parallel counting workers.
        min_count: drop pre-tokens seen fewer times (counts route).
        max_words: keep at most this many distinct pre-tokens, the most frequent
            (counts route; also bounds memory while counting).
        batch_bytes: text per counting task.
        max_memory: memory budget of the ``sharded`` route, e.g. ``"8GB"``: units
            are sized so counting fits, and the rarest pre-tokens are pruned until
            the trainer's estimated memory fits; checked before work starts and
            measured (``within_budget`` in the report).
        work_dir: ``sharded`` route: where the sorted count runs go (default:
            ``<out>/_counts``, or a temporary folder without ``out_dir``). Rerun with
            the same folder to resume after a crash: counted units are not recounted.
        unit_bytes: ``sharded`` route: text per counting unit (default from the
            budget, at most 64 MB).
        keep_counts: keep ``work_dir`` after a successful run.
    """

    vocab_size: int = Field(default=200_000, gt=0)
    pretokenizer: Literal["trinity", "trinity_strict", "gpt4o"] = "trinity"
    min_frequency: int = Field(default=2, ge=0)
    max_token_length: int | None = Field(default=None, gt=1)
    route: Literal["direct", "counts", "sharded"] = "direct"
    backend: Literal["processes", "ray"] = "processes"
    workers: int = Field(default=2, ge=1)
    min_count: int = Field(default=1, ge=1)
    max_words: int | None = Field(default=None, gt=0)
    batch_bytes: int = Field(default=1 << 21, gt=0)
    max_memory: str | int | None = None
    work_dir: str | None = None
    unit_bytes: int | None = Field(default=None, gt=0)
    keep_counts: bool = False

    @field_validator("max_memory")
    @classmethod
    def _size(cls, v):
        if v is None:
            return v
        from .memory import parse_bytes

        try:
            parse_bytes(v)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        return v

    @model_validator(mode="after")
    def _vocab_fits(self) -> "TrainConfig":
        need = BASE_VOCAB + self.forced_new_tokens()
        if self.vocab_size < need:
            raise ValueError(
                f"vocab_size={self.vocab_size} is below the {need} tokens the '{self.pretokenizer}' "
                f"rules reserve ({len(SPECIAL_TOKENS)} special, 256 bytes, forced digit groups)"
            )
        return self

    def forced_new_tokens(self) -> int:
        """Forced digit tokens that are not single bytes."""
        if not uses_digit_groups(self.pretokenizer):
            return 0
        return sum(1 for s in forced_digit_strings() if len(s) > 1)

    @classmethod
    def parse(cls, **values) -> "TrainConfig":
        """Validate ``values``; errors become a :class:`ConfigError` naming the key."""
        try:
            return cls(**values)
        except ValidationError as exc:
            raise ConfigError(_describe(exc)) from None


def _describe(exc: ValidationError) -> str:
    return "invalid tokenizer config: " + validation_message(exc, root="config")
