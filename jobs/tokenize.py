"""Tokenize job: curated Parquet/Arrow shards -> RSDB token shards, on Ray Data.

    python -m jobs.tokenize --config tokenize.yaml

A thin entrypoint over :func:`tokenizer.shards.tokenize_to_shards` (resumable per work
unit of at most ``unit_rows`` rows). Config (YAML, any fsspec URI)::

    tokenizer: /data/tokenizer        # folder with tokenizer.json, visible to every worker
    inputs: [s3://bucket/curated/]    # files, folders or globs, any fsspec URI
    output: /data/tokens              # token shards are memory-mapped: a (shared) local path
    source_field: source              # or `source: web` for one fixed source name
    shard_tokens: 67108864
    format: rsdb                      # or megatron: one .bin/.idx dataset per source
    unit_rows: 20000                  # rows per work unit; larger files are split into row ranges

On a multi-node cluster ``tokenizer`` and ``output`` must be on storage every node mounts
(the KubeRay manifests mount a shared volume at ``/data``).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, model_validator

from jobs._entry import Job, Result, run_module


class TokenizeJobConfig(BaseModel):
    """The tokenize job's config; see the module docstring for an example."""

    model_config = ConfigDict(extra="forbid")

    tokenizer: str = Field(description="folder holding tokenizer.json (a path every worker sees)")
    inputs: list[str] = Field(min_length=1, description="curated Parquet/Arrow files, folders or globs")
    output: str = Field(description="output folder for token shards (local or shared mount)")
    source: Optional[str] = Field(None, description="one fixed source name for every row")
    source_field: Optional[str] = Field(None, description="column to split the output by (default: source)")
    text_field: str = "text"
    id_field: str = "id"
    lang_field: str = "lang"
    bos: bool = True
    eos: bool = True
    batch_size: int = Field(512, gt=0)
    shard_tokens: int = Field(1 << 26, gt=0)
    max_doc_tokens: Optional[int] = Field(None, gt=0)
    format: Literal["rsdb", "megatron"] = Field("rsdb", description="RSDB token shards or Megatron .bin/.idx")
    unit_rows: int = Field(20_000, gt=0, description="rows per work unit (larger files are split)")
    workers: Optional[int] = Field(None, gt=0, description="tokenizer actors (default: the cluster's CPUs)")

    @model_validator(mode="after")
    def _check(self) -> "TokenizeJobConfig":
        if self.source is not None and self.source_field is not None:
            raise ValueError("give one of source or source_field, not both")
        if self.source is None and self.source_field is None:
            self.source_field = "source"
        for key in ("tokenizer", "output"):
            value = getattr(self, key)
            if "://" in value and not value.startswith("file://"):
                raise ValueError(f"{key}: {value} must be a local or shared-mount path, not a URI")
        return self


def _load(raw: dict[str, Any], uri: str) -> TokenizeJobConfig:
    return TokenizeJobConfig.model_validate(raw)


def _preflight(cfg: TokenizeJobConfig) -> None:
    from tokenizer.shards import check_tokenizer_dir

    check_tokenizer_dir(cfg.tokenizer)  # before Ray starts: a wrong path should not cost a cluster start


def _run(cfg: TokenizeJobConfig, args: argparse.Namespace) -> Result:
    from tokenizer import load
    from tokenizer.shards import TokenizeSpec, tokenize_to_shards

    # Fail here, before any worker starts, rather than in every worker.
    tok = Path(cfg.tokenizer.removeprefix("file://"))
    load(tok)  # ConfigError naming the path when missing or not a tokenizer.json

    spec = TokenizeSpec(
        tokenizer_dir=cfg.tokenizer, out_dir=cfg.output, source=cfg.source, source_field=cfg.source_field,
        text_field=cfg.text_field, id_field=cfg.id_field, lang_field=cfg.lang_field,
        add_bos=cfg.bos, add_eos=cfg.eos, batch_size=cfg.batch_size, shard_tokens=cfg.shard_tokens,
        max_doc_tokens=cfg.max_doc_tokens, format=cfg.format, unit_rows=cfg.unit_rows,
    )
    s = tokenize_to_shards(spec, cfg.inputs, num_workers=cfg.workers)
    return Result(
        summary={
            "units": s.units_total, "units_skipped": s.units_skipped, "rows": s.rows,
            "rejected": s.rejected, "sources": len(s.tokens_per_source), "tokens": s.tokens,
            "tokens_per_s": round(s.tokens / max(s.seconds, 1e-9)),
        },
        stats=dict(s.__dict__),
    )


JOB = Job(
    name="tokenize",
    description="Encode curated Parquet/Arrow shards into RSDB token shards or Megatron datasets (resumable per work unit).",
    load=_load,
    output=lambda cfg: cfg.output,
    run=_run,
    preflight=_preflight,
)


def main(argv: list[str] | None = None) -> int:
    from jobs._entry import main as _main

    return _main(JOB, argv)


if __name__ == "__main__":
    run_module(JOB)
