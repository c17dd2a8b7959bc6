"""The ``rephrase``, ``score`` and ``quality_classifier`` stages.

All three follow the stage contract of :mod:`pipeline.stages.base`: pure over a
``pyarrow.Table`` batch, kept and rejected rows (with reasons) out. The two
engine stages hold only configs when pickled; the engine is built on the first
batch inside the Ray actor that runs them and reused for every later batch.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, ClassVar, Literal, Optional

import pyarrow as pa
import xxhash
from pydantic import ConfigDict, Field, model_validator

from pipeline.stages.base import Stage, StageConfig, StageResult, register_stage
from pipeline.stages.base import _set_column as _set  # replace-or-append, one copy

from ._resilient import ResilientEngine
from .chunking import chunk_budget, reassemble, split_by_tokens
from .engines import EngineConfig, SamplingConfig, VLLMEngineConfig
from .engines.base import FINISH_ERROR
from .errors import StageInputError
from .judge import JUDGE_PROMPT_VERSION, judge_messages, parse_score
from .styles import Style, StyleLibrary
from .validation import ValidationConfig, validate

logger = logging.getLogger(__name__)

ENGINE_ERROR = "engine_error"  # reject reason; the error text goes to the ERROR_COLUMN of the row
ERROR_COLUMN = "engine_error"
EMPTY_SOURCE = "empty_source"
TOO_LONG = "too_long"
LOW_QUALITY = "low_quality"
UNPARSEABLE_SCORE = "unparseable_score"


def derive_seed(base: int, *parts: Any) -> int:
    """A per-request seed from the run seed and the row (document id, style, chunk), batching-independent."""
    key = ":".join([str(base), *map(str, parts)]).encode("utf-8")
    return xxhash.xxh64_intdigest(key) & 0x7FFFFFFF


class EngineStageConfig(StageConfig):
    """Options shared by the engine stages."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    engine: EngineConfig
    sampling: SamplingConfig = Field(default_factory=SamplingConfig)
    text_column: str = "text"
    id_column: str = "id"
    batch_size: int = Field(64, ge=1, description="rows per Ray batch (the vllm engine sees them all at once)")
    concurrency: int = Field(1, ge=1, description="engine actors (one per GPU or tensor-parallel group)")
    num_gpus: Optional[float] = Field(None, ge=0, description="GPUs per actor; None: tp*pp for vllm, else 0")
    num_cpus: float = Field(1.0, ge=0)
    max_engine_restarts: int = Field(2, ge=0, description="consecutive in-process engine rebuilds before failing")
    max_actor_restarts: int = Field(3, ge=0, description="Ray max_restarts of the engine actor")
    max_task_retries: int = Field(3, ge=0, description="Ray max_task_retries: batches re-run after an actor dies")
    exit_process_on_hang: Optional[bool] = Field(
        None, description="exit the actor on an engine timeout so Ray restarts it; None: true for vllm only"
    )


class _EngineStage(Stage):
    """Engine lifecycle shared by ``rephrase`` and ``score`` (lazy, never pickled)."""

    def __init__(self, config=None):
        super().__init__(config)
        self._engine: ResilientEngine | None = None

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_engine"] = None
        return state

    @property
    def engine(self) -> ResilientEngine:
        if self._engine is None:
            cfg = self.config
            exit_on_hang = cfg.exit_process_on_hang
            if exit_on_hang is None:
                exit_on_hang = isinstance(cfg.engine, VLLMEngineConfig)
            self._engine = ResilientEngine(
                cfg.engine, max_engine_restarts=cfg.max_engine_restarts, exit_process_on_hang=exit_on_hang
            )
        return self._engine

    def ray_map_kwargs(self) -> dict[str, Any]:
        cfg = self.config
        gpus = cfg.num_gpus
        if gpus is None:
            e = cfg.engine
            gpus = float(e.tensor_parallel_size * e.pipeline_parallel_size) if isinstance(e, VLLMEngineConfig) else 0.0
        kw: dict[str, Any] = {
            "batch_size": cfg.batch_size,
            "concurrency": cfg.concurrency,
            "num_cpus": cfg.num_cpus,
            "max_restarts": cfg.max_actor_restarts,
            "max_task_retries": cfg.max_task_retries,
        }
        if gpus:
            kw["num_gpus"] = gpus
        return kw

    def _ids(self, table: pa.Table) -> list[str]:
        col = self.config.id_column
        if col in table.column_names:
            return [str(v) if v is not None else f"row{i}" for i, v in enumerate(table.column(col).to_pylist())]
        texts = table.column(self.config.text_column).to_pylist()
        return [xxhash.xxh64_hexdigest((t or "").encode("utf-8")) for t in texts]

    def _check_columns(self, table: pa.Table) -> None:
        if self.config.text_column not in table.column_names:
            raise StageInputError(
                f"stage {self.name}: text column {self.config.text_column!r} not in the batch (columns: {table.column_names})"
            )


class RephraseConfig(EngineStageConfig):
    """Config of the ``rephrase`` stage.

    Each input document is rephrased in one style of ``styles`` (``style_mode: hash``,
    the default: deterministic by document id) or in every style (``style_mode: each``,
    one output row per style). The rephrased text replaces ``text`` (the original is kept in
    ``source_text_column`` when set) and ``id`` becomes ``"{id}#{style}"``.
    """

    styles: list[str] = Field(default_factory=lambda: ["wikipedia"], min_length=1)
    style_mode: Literal["hash", "each"] = Field(
        "hash",
        description="hash: one style per document, picked by hash of (seed, id): one output row per input row, "
        "as the curate runner requires; each: one output row per style (fan-out, for the standalone adapter)",
    )
    style_files: list[str] = Field(default_factory=list, description="YAML files with a 'styles:' list")
    custom_styles: list[Style] = Field(default_factory=list, description="styles defined inline")
    lang_column: Optional[str] = Field("lang", description="source language column (detected when absent)")
    source_text_column: Optional[str] = Field(None, description="keep the original text in this column")
    max_chunk_tokens: Optional[int] = Field(None, ge=1, description="cap on tokens per chunk (below the context budget)")
    max_chunks: int = Field(64, ge=1, description="documents needing more chunks are rejected as too_long")
    chunk_separator: str = "\n\n"
    validation: ValidationConfig = Field(default_factory=ValidationConfig)

    @model_validator(mode="after")
    def _styles_exist(self):
        lib = StyleLibrary.load(self.style_files, self.custom_styles)  # raises ConfigError naming the file
        for s in self.styles:
            lib.get(s)
        return self


META_FIELDS = [
    ("source_id", pa.string()),
    ("rephrase_style", pa.string()),
    ("rephrase_style_version", pa.int32()),
    ("rephrase_model", pa.string()),
    ("rephrase_sampling", pa.string()),
    ("rephrase_seed", pa.int64()),
    ("rephrase_chunks", pa.int32()),
    ("rephrase_prompt_tokens", pa.int64()),
    ("rephrase_completion_tokens", pa.int64()),
]


@register_stage
class RephraseStage(_EngineStage):
    """Rewrite documents with an LLM in one or more prompt styles, validating every output.

    Reject reasons: ``empty_source``, ``too_long``, ``engine_error`` (the error text is in the
    row's ``engine_error`` column), and the validation reasons (``empty``, ``truncated``, ``refusal``, ``wrong_language``,
    ``length_ratio``, ``repetition``).
    """

    name: ClassVar[str] = "rephrase"
    Config: ClassVar[type[StageConfig]] = RephraseConfig

    def __init__(self, config=None):
        super().__init__(config)
        cfg = self.config
        lib = StyleLibrary.load(cfg.style_files, cfg.custom_styles)
        self._styles = [lib.get(s) for s in cfg.styles]
        self._sampling_json = cfg.sampling.model_dump_json()

    def plan(self, table: pa.Table, eng: Any) -> dict[str, Any]:
        """Chunk every (row, style) pair and build its prompts and per-request seeds.

        ``eng`` provides ``count_tokens`` and ``context_length`` (any :class:`Engine`).
        Returns a dict with ``jobs`` (one per output row, in order), ``prompts``,
        ``seeds``, ``ids`` and ``langs``; the benchmark uses it to feed the raw engine
        exactly the prompts this stage sends.
        """
        cfg = self.config
        n = table.num_rows
        texts = [t or "" for t in table.column(cfg.text_column).to_pylist()]
        ids = self._ids(table)
        langs = (
            table.column(cfg.lang_column).to_pylist()
            if cfg.lang_column and cfg.lang_column in table.column_names
            else [None] * n
        )
        jobs: list[dict[str, Any]] = []
        prompts: list[Any] = []
        seeds: list[int] = []
        template_cache: dict[tuple[str, Any], int] = {}
        for r in range(n):
            if cfg.style_mode == "each" or len(self._styles) == 1:
                styles = self._styles
            else:
                styles = [self._styles[derive_seed(cfg.sampling.seed, ids[r], "style") % len(self._styles)]]
            for style in styles:
                job = {"row": r, "style": style, "reason": None, "error": None, "chunks": [], "first": len(prompts)}
                jobs.append(job)
                if not texts[r].strip():
                    job["reason"] = EMPTY_SOURCE
                    continue
                key = (style.name, langs[r])
                if key not in template_cache:
                    template_cache[key] = sum(eng.count_tokens(m["content"]) for m in style.messages("", langs[r])) + 8
                budget = chunk_budget(eng.context_length, cfg.sampling.max_tokens, template_cache[key])
                if cfg.max_chunk_tokens:
                    budget = min(budget, cfg.max_chunk_tokens)
                try:
                    chunks = split_by_tokens(texts[r], eng.count_tokens, budget)
                except ValueError as exc:
                    job["reason"], job["error"] = TOO_LONG, str(exc)
                    continue
                if len(chunks) > cfg.max_chunks:
                    job["reason"] = TOO_LONG
                    continue
                job["chunks"] = chunks
                for k, chunk in enumerate(chunks):
                    prompts.append(style.messages(chunk, langs[r]))
                    seeds.append(derive_seed(cfg.sampling.seed, ids[r], style.name, k))
        return {"jobs": jobs, "prompts": prompts, "seeds": seeds, "ids": ids, "langs": langs}

    def process(self, table: pa.Table) -> StageResult:
        self._check_columns(table)
        cfg = self.config
        engine = self.engine
        eng = engine.engine  # built here, inside the worker

        # 1. plan: one job per (row, style), each with its chunks
        planned = self.plan(table, eng)
        jobs, prompts, seeds = planned["jobs"], planned["prompts"], planned["seeds"]
        ids, langs = planned["ids"], planned["langs"]

        # 2. generate everything in one call: the engine batches (vLLM: continuous batching)
        gens = engine.generate(prompts, cfg.sampling, seeds)

        # 3. validate and assemble, in input order
        rows, reasons, out_texts, errors = [], [], [], []
        meta: dict[str, list[Any]] = {f: [] for f, _ in META_FIELDS}
        for job in jobs:
            r, style = job["row"], job["style"]
            reason, error = job["reason"], job["error"]
            parts: list[str] = []
            ptoks = ctoks = 0
            for k, chunk in enumerate(job["chunks"]):
                g = gens[job["first"] + k]
                ptoks += g.prompt_tokens
                ctoks += g.completion_tokens
                parts.append(g.text)
                if reason is None:
                    if g.finish_reason == FINISH_ERROR:
                        reason, error = ENGINE_ERROR, g.extra.get("error", "unknown error")
                        if len(job["chunks"]) > 1:
                            error = f"chunk {k}: {error}"
                    else:
                        reason = validate(
                            chunk, g.text, g.finish_reason, cfg.validation, length_bounds=style.length_ratio,
                            source_lang=langs[r], check_language=style.check_language,
                        )
                        if reason is not None and len(job["chunks"]) > 1:
                            logger.debug("doc %s chunk %d: %s", ids[r], k, reason)
            rows.append(r)
            reasons.append(reason)
            errors.append(error)
            out_texts.append(reassemble(parts, cfg.chunk_separator) if len(parts) > 1 else (parts[0] if parts else ""))
            meta["source_id"].append(ids[r])
            meta["rephrase_style"].append(style.name)
            meta["rephrase_style_version"].append(style.version)
            meta["rephrase_model"].append(eng.model_name)
            meta["rephrase_sampling"].append(self._sampling_json)
            meta["rephrase_seed"].append(seeds[job["first"]] if job["chunks"] else derive_seed(cfg.sampling.seed, ids[r], style.name, 0))
            meta["rephrase_chunks"].append(len(job["chunks"]))
            meta["rephrase_prompt_tokens"].append(ptoks)
            meta["rephrase_completion_tokens"].append(ctoks)

        out = table.take(pa.array(rows, pa.int64()))
        if cfg.source_text_column:
            out = _set(out, cfg.source_text_column, out.column(cfg.text_column))
        out = _set(out, cfg.text_column, pa.array(out_texts, pa.string()))
        if cfg.id_column in out.column_names:
            new_ids = [f"{meta['source_id'][i]}#{meta['rephrase_style'][i]}" for i in range(len(rows))]
            out = _set(out, cfg.id_column, pa.array(new_ids, pa.string()))
        for name, typ in META_FIELDS:
            out = _set(out, name, pa.array(meta[name], typ))
        out = _set(out, ERROR_COLUMN, pa.array(errors, pa.string()))
        return self.split(out, reasons)


class ScoreConfig(EngineStageConfig):
    """Config of the ``score`` stage (LLM judge, FineWeb-Edu-style 0-5 educational value)."""

    sampling: SamplingConfig = Field(default_factory=lambda: SamplingConfig(temperature=0.0, max_tokens=256))
    output_column: str = "quality"
    threshold: Optional[float] = Field(3.0, description="rows scoring below are rejected as low_quality; None keeps all")
    max_doc_tokens: int = Field(2000, ge=16, description="documents are truncated to this many tokens for judging")
    keep_judge_output: bool = Field(False, description="also write the judge's reply to '<output_column>_judge'")
    on_unparseable: Literal["reject", "keep"] = "reject"


@register_stage
class ScoreStage(_EngineStage):
    """Score documents 0-5 with an LLM judge; writes ``quality`` and filters by ``threshold``.

    Reject reasons: ``engine_error`` (text in the ``engine_error`` column), ``unparseable_score``, ``low_quality``.
    """

    name: ClassVar[str] = "score"
    Config: ClassVar[type[StageConfig]] = ScoreConfig

    def _truncate(self, eng, text: str) -> str:
        limit = self.config.max_doc_tokens
        tok = eng.tokenizer
        if tok is None:
            return text[: limit * 4]
        ids = tok.encode(text, add_special_tokens=False)
        return text if len(ids) <= limit else tok.decode(ids[:limit])

    def process(self, table: pa.Table) -> StageResult:
        self._check_columns(table)
        cfg = self.config
        texts = [t or "" for t in table.column(cfg.text_column).to_pylist()]
        ids = self._ids(table)
        engine = self.engine
        eng = engine.engine
        prompts = [judge_messages(self._truncate(eng, t)) for t in texts]
        seeds = [derive_seed(cfg.sampling.seed, i, "judge", JUDGE_PROMPT_VERSION) for i in ids]
        gens = engine.generate(prompts, cfg.sampling, seeds)
        scores: list[Optional[float]] = []
        reasons: list[Optional[str]] = []
        errors: list[Optional[str]] = []
        for g in gens:
            errors.append(g.extra.get("error", "unknown error") if g.finish_reason == FINISH_ERROR else None)
            if g.finish_reason == FINISH_ERROR:
                scores.append(None)
                reasons.append(ENGINE_ERROR)
                continue
            s = parse_score(g.text)
            scores.append(s)
            if s is None:
                reasons.append(UNPARSEABLE_SCORE if cfg.on_unparseable == "reject" else None)
            elif cfg.threshold is not None and s < cfg.threshold:
                reasons.append(LOW_QUALITY)
            else:
                reasons.append(None)
        out = _set(table, cfg.output_column, pa.array(scores, pa.float32()))
        out = _set(out, ERROR_COLUMN, pa.array(errors, pa.string()))
        if cfg.keep_judge_output:
            out = _set(out, f"{cfg.output_column}_judge", pa.array([g.text for g in gens], pa.string()))
        return self.split(out, reasons)


class QualityClassifierConfig(StageConfig):
    """Config of the ``quality_classifier`` stage (CPU, hashed n-gram linear model)."""

    model_path: str = Field(description="a file written by HashedNgramClassifier.save (trinity-data rephrase train-classifier)")
    text_column: str = "text"
    output_column: str = "quality"
    threshold: Optional[float] = Field(None, description="rows predicted below are rejected as low_quality")
    batch_size: int = Field(1024, ge=1)
    concurrency: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _exists(self):
        if not Path(self.model_path).is_file():
            from common.errors import ConfigError

            raise ConfigError(f"quality_classifier.model_path: {self.model_path} does not exist")
        return self


@register_stage
class QualityClassifierStage(Stage):
    """Score every document with the cheap classifier trained on judge labels."""

    name: ClassVar[str] = "quality_classifier"
    Config: ClassVar[type[StageConfig]] = QualityClassifierConfig

    def __init__(self, config=None):
        super().__init__(config)
        self._clf = None

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_clf"] = None
        return state

    def ray_map_kwargs(self) -> dict[str, Any]:
        return {"batch_size": self.config.batch_size, "concurrency": self.config.concurrency}

    def process(self, table: pa.Table) -> StageResult:
        from .classifier import HashedNgramClassifier

        cfg = self.config
        if self._clf is None:
            self._clf = HashedNgramClassifier.load(cfg.model_path)
        texts = [t or "" for t in table.column(cfg.text_column).to_pylist()]
        pred = self._clf.predict(texts)
        out = _set(table, cfg.output_column, pa.array(pred, pa.float32()))
        reasons = [LOW_QUALITY if cfg.threshold is not None and float(p) < cfg.threshold else None for p in pred]
        return self.split(out, reasons)

