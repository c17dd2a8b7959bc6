"""Train-tokenizer job: a byte-level BPE on curated text (:func:`tokenizer.train`).

    python -m jobs.train_tokenizer --config tokenizer.yaml

Config (YAML, any fsspec URI): every :class:`tokenizer.TrainConfig` key plus ``output``::

    inputs: [s3://bucket/curated/]   # Parquet/Arrow/JSONL, any fsspec URI
    vocab_size: 200000
    max_bytes: 20000000000
    route: counts                     # parallel pre-token counting
    backend: processes                # or `ray`: counting tasks spread over the cluster
    workers: 8
    output: /data/tokenizer           # a folder; any fsspec URI (trained locally, then uploaded)

For corpora larger than memory use ``route: sharded`` with ``max_memory: 8GB`` (and
``work_dir`` on a local disk, to resume a killed run): see docs/tokenizer.md.

Training runs in the driver process; on KubeRay the RayJob reserves a CPU worker for it
(``entrypointNumCpus``), so the final merge does not land on the small head pod.
"""

from __future__ import annotations

import argparse
import tempfile
from typing import Any

from pydantic import Field

from jobs._entry import Job, Result, run_module
from tokenizer.config import TrainConfig


class TrainTokenizerJobConfig(TrainConfig):
    """:class:`tokenizer.TrainConfig` plus where the trained tokenizer goes."""

    output: str = Field(description="folder for tokenizer.json and friends; local path or fsspec URI")

    def train_config(self) -> TrainConfig:
        return TrainConfig.model_validate(self.model_dump(exclude={"output"}))


def _load(raw: dict[str, Any], uri: str) -> TrainTokenizerJobConfig:
    return TrainTokenizerJobConfig.model_validate(raw)


def _is_remote(uri: str) -> bool:
    return "://" in uri and not uri.startswith("file://")


def _run(cfg: TrainTokenizerJobConfig, args: argparse.Namespace) -> Result:
    from tokenizer.train import train

    from pipeline._lock import OutputLock

    train_cfg = cfg.train_config()
    with OutputLock(cfg.output, job="train_tokenizer"):  # one trainer per output folder
        if _is_remote(cfg.output):
            import fsspec

            with tempfile.TemporaryDirectory(prefix="trinity-tokenizer-") as tmp:
                result = train(train_cfg, out_dir=tmp)
                fs, path = fsspec.core.url_to_fs(cfg.output)
                fs.makedirs(path, exist_ok=True)
                fs.put(tmp.rstrip("/") + "/", path.rstrip("/") + "/", recursive=True)
        else:
            result = train(train_cfg, out_dir=cfg.output.removeprefix("file://"))
    r = result.report
    return Result(
        summary={
            "vocab_size": r.get("vocab_size"), "vocab_reached": r.get("vocab_reached"),
            "docs": r.get("input", {}).get("docs"), "input_bytes": r.get("input_bytes"),
            "train_s": r.get("seconds"), "peak_rss_mb": r.get("peak_rss_mb"),
        },
        stats=r,
    )


JOB = Job(
    name="train_tokenizer",
    description="Train a byte-level BPE tokenizer on curated text and save it (tokenizer.json).",
    load=_load,
    output=lambda cfg: cfg.output,
    run=_run,
    uses_ray=lambda cfg: cfg.route in ("counts", "sharded") and cfg.backend == "ray",
)


def main(argv: list[str] | None = None) -> int:
    from jobs._entry import main as _main

    return _main(JOB, argv)


if __name__ == "__main__":
    run_module(JOB)
