"""Tokenize job: curated Parquet/Arrow shards -> RSDB token shards, on Ray Data.

    python -m jobs.tokenize --config tokenize.yaml

A thin entrypoint over :func:`tokenizer.tokenize_job.tokenize_to_shards` (resumable per work
unit of at most ``unit_rows`` rows). The config is :class:`tokenizer.tokenize_job.TokenizeConfig`,
the same model ``trinity-data tokenize`` derives its flags from: every key below is a flag
there (``unit_rows`` is ``--unit-rows``), and every flag a key here. YAML, any fsspec URI::

    tokenizer: /data/tokenizer        # folder with tokenizer.json, visible to every worker
    inputs: [s3://bucket/curated/]    # files, folders or globs, any fsspec URI
    output: /data/tokens              # token shards are memory-mapped: a (shared) local path
    source_field: source              # or `source: web` for one fixed source name
    shard_tokens: 67108864
    format: rsdb                      # or megatron: one .bin/.idx dataset per source
    unit_rows: 20000                  # rows per work unit; larger files are split into row ranges
    # also: text_field, id_field, lang_field, bos, eos, batch_size, max_doc_tokens, fast,
    # workers, overwrite (see TokenizeConfig)

On a multi-node cluster ``tokenizer`` and ``output`` must be on storage every node mounts
(the KubeRay manifests mount a shared volume at ``/data``).
"""

from __future__ import annotations

import argparse
from typing import Any

from jobs._entry import Job, Result, run_module
from tokenizer.tokenize_job import TokenizeConfig, load_config


def _load(raw: dict[str, Any], uri: str) -> TokenizeConfig:
    return load_config(raw, uri)


def _preflight(cfg: TokenizeConfig) -> None:
    from tokenizer import load
    from tokenizer.tokenize_job import check_tokenizer_dir

    # Before Ray starts, rather than in every worker: a wrong path should not cost a cluster start.
    check_tokenizer_dir(cfg.tokenizer)
    load(cfg.tokenizer)  # ConfigError naming the path when it is not a tokenizer.json


def _run(cfg: TokenizeConfig, args: argparse.Namespace) -> Result:
    from tokenizer.tokenize_job import tokenize_to_shards

    s = tokenize_to_shards(cfg)
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
