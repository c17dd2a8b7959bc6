"""Where a curated output's files go: the kept shards alone in ``OUT``, the rest beside it.

``OUT`` (``output.path``) holds nothing but the kept shards, ``part-<unit>-<piece>.parquet``,
so every common reader of a folder loads exactly the kept rows from it:
``datasets.load_dataset(OUT)``, ``load_dataset("parquet", data_dir=OUT)``,
``pyarrow.dataset.dataset(OUT)`` and duckdb's ``'OUT/**/*.parquet'``. Everything else a run
writes (the manifest, the dataset card, the rejected rows, the resume state, the lock, the
job's stats) lives in the *run folder* ``OUT.curation`` next to it.

Why a sibling and not a hidden or ``_`` folder inside ``OUT`` (measured with datasets 5.2,
pyarrow, duckdb 2.0): pyarrow skips ``.``/``_`` names but reads every other file as
Parquet (a ``manifest.json`` or ``README.md`` stops it); ``datasets`` skips only ``.`` and
``__`` names, and its ``parquet`` builder with ``data_dir`` opens every file whatever its
extension (``_lock.json`` included); duckdb's ``**`` glob descends into hidden and ``_``
folders alike, so any other ``*.parquet`` file under ``OUT`` (rejected rows, work files)
would be counted. No name inside ``OUT`` is skipped by all four, so nothing but kept
shards may be there.

>>> run_folder("s3://bucket/curated/v1/")
's3://bucket/curated/v1.curation'
"""

from __future__ import annotations

from rsdb.errors import ConfigError

__all__ = ["CARD", "JOB_SUFFIX", "MANIFEST", "REJECTED", "RUN_SUFFIX", "WORK", "is_shard_name", "run_folder"]

RUN_SUFFIX = ".curation"
MANIFEST = "manifest.json"  # in the run folder
CARD = "README.md"  # in the run folder: ``load_dataset(RUN, "rejected")``
REJECTED = "rejected"  # in the run folder: rejected/part-<unit>-<piece>.parquet
WORK = "_work"  # in the run folder: plan, per-unit rows and done markers, dedup drop lists
JOB_SUFFIX = ".job.json"  # the curate job's stats file, in the run folder too
# Object stores whose first path part is a bucket (a bucket has no sibling folder).
_BUCKETS = {"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "oss", "r2"}


def run_folder(output: str) -> str:
    """The run folder of output folder ``output``: the same path with ``.curation`` appended.

    Raises:
        ConfigError: ``output`` is a filesystem or bucket root, which has no sibling.
    """
    base = str(output).rstrip("/")
    proto, _, path = base.rpartition("://")
    if not path or (proto in _BUCKETS and "/" not in path):
        raise ConfigError(f"output.path {output!r}: curated shards need a folder of their own (not a filesystem or "
                          "bucket root): the run folder OUT.curation is written next to it")
    return base + RUN_SUFFIX


def is_shard_name(name: str) -> bool:
    """Whether a file name inside ``OUT`` is one of the run's kept shards."""
    return name.startswith("part-") and name.endswith((".parquet", ".arrow"))
