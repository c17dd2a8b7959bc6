"""Run a curate config on Ray: map phases over work units, global phases for dedup, then the writer.

Phases and what makes each resumable:

Work state, rejected rows and the manifest live in the run folder ``OUT.curation`` beside
the output folder ``OUT``, which receives only the kept shards (:mod:`pipeline.layout`).

1. **plan**: the input is split into work units (``pipeline.read``) and saved in the run
   record ``OUT.curation/_work/run.json`` (:class:`common.units.RunRecord`: job
   ``curate``, the config hash as fingerprint, the hashed settings redacted, the unit plan
   as ``state``); a rerun reuses the plan and refuses a different config.
2. **map k**: every unit not yet marked done runs through the segment's batch stages
   (and the ``prepare`` part of its global stages); each unit commits one atomic file
   of its rows, kept and rejected, then a ``.done`` marker.
3. **global k.j**: a global stage (dedup) decides over all live rows of map k, as a
   distributed Ray job (components included); its tasks write one drop file per unit
   that lost rows, and a stats file written last commits the phase.
4. **write**: one Ray task per unit writes its kept rows as zstd Parquet (or Arrow)
   shards ``OUT/part-<unit>-<piece>`` and its rejected rows to ``OUT.curation/rejected/``
   (``pipeline._write``); the driver merges the tasks' small summaries into
   ``OUT.curation/manifest.json`` (:mod:`pipeline.manifest`), written last. Names and
   contents depend only on the data, so an interrupted and an uninterrupted run write
   byte-identical shards.

Stages after a global stage form the next segment and read map k's survivors.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from pydantic import BaseModel, ConfigDict

from common.units import RunRecord, RunRecordError, UnitLedger
from pipeline._drops import DropSet
from pipeline._fs import OutFS
from pipeline._lock import LOCK_NAME, OutputLock
from pipeline._ray import (
    PartWriter,
    RayTasks,
    StageUDF,
    UnitLoader,
    UnitWorker,
    load_unit_rows,
    run_unit_actors,
    row_keys,
    unit_dir,
)
from pipeline._write import KEPT_BASE, unify, unit_schemas, write_shard, write_unit
from pipeline.layout import CARD, MANIFEST, REJECTED, WORK, is_shard_name, run_folder
from pipeline.manifest import dump_manifest, load_manifest
from pipeline.progress import UnitProgress
from pipeline.provenance import redact, run_record, utc_now
from pipeline.config import PipelineConfig
from pipeline.errors import PipelineError
from pipeline.read import READ_STAGE, WorkUnit, plan_units
from pipeline.stages.base import DUP_OF, REJECT_REASON, REJECT_STAGE, ROW_KEY, GlobalStage, Stage
from pipeline.stats import StageStats, UnitStats

log = logging.getLogger(__name__)

JOB = "curate"  # the run record's job (common.units): a folder of another job is refused


@dataclass
class Segment:
    batch: list[Stage] = field(default_factory=list)
    globals: list[GlobalStage] = field(default_factory=list)


@dataclass
class RunResult:
    """What :func:`run_pipeline` returns: the manifest and how much work was skipped."""

    manifest: dict[str, Any]
    seconds: float
    units_total: int
    units_skipped: int
    already_complete: bool = False


def segments_of(stages: list[Stage]) -> list[Segment]:
    segs = [Segment()]
    for s in stages:
        if isinstance(s, GlobalStage):
            segs[-1].globals.append(s)
        else:
            if segs[-1].globals:
                segs.append(Segment())
            segs[-1].batch.append(s)
    return segs


def code_version() -> str:
    """The package version, plus the git commit when run from a checkout."""
    import subprocess
    from importlib import metadata
    from pathlib import Path

    try:
        version = metadata.version("trinity-data")
    except metadata.PackageNotFoundError:
        version = "0+unknown"
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).parent,
                                capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return f"{version}+g{commit}" if commit else version


def _ensure_ray(cfg: PipelineConfig) -> None:
    from common.cluster import connect_ray

    connect_ray(cfg.ray.address, num_cpus=cfg.ray.num_cpus)


def _workers(cfg: PipelineConfig) -> int:
    import ray

    return cfg.ray.workers or max(1, int(ray.cluster_resources().get("CPU", 1)))


def run_pipeline(cfg: PipelineConfig, *, overwrite: bool = False) -> RunResult:
    """Run (or resume) a curate config; returns the manifest.

    Args:
        cfg: a validated config (see :func:`pipeline.config.load_config`).
        overwrite: discard a finished or partial run of another config at ``output.path``.

    Raises:
        PipelineError: ``output.path`` holds a run of a different config (and not ``overwrite``).
        OutputLocked: another live run is writing ``output.path``.
    """
    # One writer per output folder: a second run would delete this one's work files. The lock
    # sits in the run folder, so the output folder never holds anything but kept shards.
    with OutputLock(run_folder(cfg.output.path), cfg.output.storage_options, job="curate"):
        return _run_locked(cfg, overwrite)


def _run_locked(cfg: PipelineConfig, overwrite: bool) -> RunResult:
    started = time.perf_counter()
    started_at = utc_now()  # recorded in the manifest's "run" entry
    out = OutFS(run_folder(cfg.output.path), cfg.output.storage_options)  # work state, rejected rows, manifest
    chash = cfg.config_hash()
    stages = cfg.build_stages()

    if not overwrite and out.exists(MANIFEST) and out.exists(WORK, "run.json"):
        done = load_manifest(cfg.output.path, cfg.output.storage_options)
        if done is not None and done.config_hash == chash:
            log.info("%s: already complete for this config", cfg.output.path)
            return RunResult(done.to_json(), 0.0, done.input.units, 0, already_complete=True)
    cpu_started = time.process_time()  # the driver's own CPU time: the run's serial part
    phases: dict[str, float] = {}  # wall seconds per phase, in the manifest
    tick = time.perf_counter()
    units = _plan(cfg, out, chash, overwrite)
    phases["plan"] = time.perf_counter() - tick
    _ensure_ray(cfg)

    segs = segments_of(stages)
    skipped = 0
    prev_drops: list[DropSet] = []
    global_stats: dict[str, StageStats] = {}
    for k, seg in enumerate(segs):
        tick = time.perf_counter()
        skipped += _map_phase(cfg, out, units, k, seg, prev_drops)
        phases[f"map{k}"] = time.perf_counter() - tick
        drops_here: list[DropSet] = []
        for j, g in enumerate(seg.globals):
            tick = time.perf_counter()
            drops, stats = _global_phase(cfg, out, units, k, j, g, drops_here)
            phases[f"global{k}-{j}-{g.name}"] = time.perf_counter() - tick
            drops_here.append(drops)
            global_stats[g.name] = stats
        prev_drops = drops_here
    manifest = _write_final(cfg, out, units, len(segs) - 1, prev_drops, stages, global_stats, chash,
                            started_at=started_at, timing=(phases, started, cpu_started))
    return RunResult(manifest, time.perf_counter() - started, len(units), skipped)


class CuratePlan(BaseModel):
    """The curate run's fixed state in its run record (``state``): the work units, in order."""

    model_config = ConfigDict(extra="forbid")

    units: list[WorkUnit]


def _legacy_record(raw: dict[str, Any]) -> RunRecord | None:
    """A ``run.json`` written before :class:`common.units.RunRecord` (``config_hash``, ``units``) as a record."""
    if "config_hash" not in raw or "units" not in raw:
        return None
    return RunRecord(job=JOB, fingerprint=str(raw["config_hash"]), state={"units": raw["units"]})


def ledger(cfg: PipelineConfig) -> UnitLedger:
    """The curate run's record and done-markers: ``OUT.curation/_work/run.json``, ``map<k>/<unit>.done``."""
    out = OutFS(run_folder(cfg.output.path), cfg.output.storage_options)
    return UnitLedger(out.uri(WORK), suffix=".done", storage_options=cfg.output.storage_options,
                      label=OutFS(cfg.output.path, cfg.output.storage_options).uri())


def _plan(cfg: PipelineConfig, out: OutFS, chash: str, overwrite: bool) -> list[WorkUnit]:
    data = OutFS(cfg.output.path, cfg.output.storage_options)
    book = ledger(cfg)
    try:
        found = book.record(legacy=_legacy_record)
    except RunRecordError:
        if not overwrite:
            raise
        found = None  # unreadable: --overwrite replaces it with the rest
    if found is not None:
        if found.job == JOB and found.fingerprint == chash:
            return CuratePlan.model_validate(found.state).units
        if not overwrite:
            raise PipelineError(
                f"{data.uri()} holds a run of a different config (hash {found.fingerprint[:12]}, "
                f"this one {chash[:12]}); choose another output.path or pass --overwrite")
    if overwrite:
        for name in out.ls():
            if name != LOCK_NAME:  # ours
                out.rm(name, recursive=True)
        for name in data.ls():
            data.rm(name, recursive=True)
    else:
        _refuse_foreign_files(data)
    units = plan_units(cfg.input)
    # the folder holds no record now (or one claim returns as is): this writes the run's record
    book.claim(RunRecord(job=JOB, fingerprint=chash, settings=redact(cfg.hashed_settings()),
                         state=CuratePlan(units=units).model_dump(mode="json")))
    log.info("planned %d work units", len(units))
    return units


def _refuse_foreign_files(data: OutFS) -> None:
    """A fresh run writes only shards into the output folder: refuse one that holds anything else.

    Such a folder is an output of the earlier layout (``manifest.json``, ``rejected/`` and
    ``_work/`` inside it) or another dataset; writing shards into it would leave a folder
    that readers cannot load as one dataset. Hidden names (``.tmp-*`` of a killed write) are
    removed by the final write.
    """
    foreign = [n for n in data.ls() if not is_shard_name(n) and not n.startswith(".")]
    if foreign:
        shown = ", ".join(foreign[:4]) + (f" (+{len(foreign) - 4} more)" if len(foreign) > 4 else "")
        raise PipelineError(f"{data.uri()} holds files that are not curated shards ({shown}): an output written "
                            "in the earlier layout, or another dataset; choose another output.path or pass --overwrite")


def _map_phase(cfg: PipelineConfig, out: OutFS, units: list[WorkUnit], k: int, seg: Segment,
               prev_drops: list[DropSet]) -> int:
    import ray

    book = ledger(cfg)
    done = book.done_units(phase=f"map{k}")
    todo = [u for u in units if u.name not in done]
    if not todo:
        log.info("map %d: all %d units already done", k, len(units))
        return len(units)
    for u in todo:  # a unit killed half-way starts over
        out.rm(*unit_dir(k, u.name), recursive=True)
    loader = UnitLoader(out, cfg.input, k, prev_drops)
    chain: list[tuple[Stage, bool]] = [(s, False) for s in seg.batch] + [(g, True) for g in seg.globals]
    special = [i for i, (s, _) in enumerate(chain) if s.ray_map_kwargs()]
    workers = min(_workers(cfg), len(todo))
    level = cfg.output.compression_level
    blobs = [json.dumps(u.to_json()) for u in todo]
    names = "+".join(s.name for s, _ in chain) or "copy"
    if not special:  # every stage fused into one actor per worker, each unit committed by its actor
        kwargs = {"stages": chain, "loader": loader, "batch_size": cfg.ray.batch_size, "commit": True,
                  "compression": "zstd", "level": level, "ledger": book}
        with UnitProgress(todo, desc=f"map {k} [{names}]", enabled=cfg.progress) as bar:
            run_unit_actors(kwargs, blobs, workers, label=f"Unit[{names}]", on_done=bar.done)
    else:
        ds = ray.data.from_items([{"unit": b} for b in blobs], override_num_blocks=len(blobs))
        head = chain[: special[0]]
        udf = type(f"Unit[{'+'.join(s.name for s, _ in head) or 'read'}]", (UnitWorker,), {})
        ds = ds.map_batches(udf, batch_size=1, concurrency=workers, num_cpus=1, batch_format="pyarrow",
                            fn_constructor_kwargs={"stages": head, "loader": loader,
                                                   "batch_size": cfg.ray.batch_size, "commit": False,
                                                   "compression": "zstd", "level": level})
        for stage, _prep in chain[special[0]:]:
            kwargs = dict(stage.ray_map_kwargs())
            if "concurrency" not in kwargs and "compute" not in kwargs:
                kwargs["concurrency"] = 1
            kwargs.setdefault("batch_format", "pyarrow")
            sudf = type(f"Stage[{stage.name}]", (StageUDF,), {})
            ds = ds.map_batches(sudf, fn_constructor_kwargs={"stage": stage, "out": out, "phase": k}, **kwargs)
        writer = PartWriter(out, k, "zstd", level)
        ds = ds.map_batches(_call, fn_kwargs={"obj": writer}, batch_format="pyarrow", batch_size=None)
        expected = {u.name: _expected_rows(out, u, k, prev_drops) for u in todo}
        got: dict[str, int] = {u.name: 0 for u in todo}
        with UnitProgress(todo, desc=f"map {k} [{names}]", enabled=cfg.progress) as bar:
            for batch in ds.iter_batches(batch_format="pyarrow", batch_size=None):
                for unit, rows in zip(batch.column("unit").to_pylist(), batch.column("rows").to_pylist()):
                    got[unit] += rows
                    if got[unit] == expected[unit]:
                        book.mark(unit, {"rows": rows}, phase=f"map{k}")
                        bar.done(unit)
        missing = [u for u in todo if got[u.name] != expected[u.name]]
        if missing:
            raise PipelineError(f"map {k}: units {[u.name for u in missing[:5]]} lost rows "
                                f"(got {[got[u.name] for u in missing[:5]]}, expected "
                                f"{[expected[u.name] for u in missing[:5]]}); rerun to retry them")
    return len(units) - len(todo)


def _call(table: pa.Table, obj: Any) -> pa.Table:
    return obj(table)


def _expected_rows(out: OutFS, unit: WorkUnit, k: int, prev_drops: list) -> int:
    if k == 0:
        return unit.size
    prev = load_unit_rows(out, k - 1, unit.name)
    return int(pc.sum(pc.is_null(prev.column(REJECT_STAGE))).as_py() or 0) if prev.num_rows else 0


def _load_keys(out: OutFS, k: int, unit: WorkUnit, columns: list[str], prior: list[DropSet]) -> pa.Table:
    """Ray task: a unit's live rows after the segment's earlier global stages (their drop files for this unit)."""
    table = load_unit_rows(out, k, unit.name)
    if not table.num_rows:
        return pa.table({})
    table = table.filter(pc.is_null(table.column(REJECT_STAGE)))
    keys = row_keys(table)
    table = table.append_column(ROW_KEY, keys)
    for drops in prior:
        gone = drops.for_unit(unit.index).column(ROW_KEY)
        table = table.filter(pc.invert(pc.is_in(table.column(ROW_KEY), value_set=gone)))
    nbytes = pc.binary_length(table.column("text"))
    return table.select(["id", ROW_KEY, *columns]).append_column("_nbytes", nbytes)


def _global_phase(cfg: PipelineConfig, out: OutFS, units: list[WorkUnit], k: int, j: int, g: GlobalStage,
                  prior: list[DropSet]) -> tuple[DropSet, StageStats]:
    """One global stage over all live rows of map k, on the cluster.

    The stage's tasks write each unit's drops as its own file (``pipeline._drops``); the
    driver holds only object references and per-task counters, never rows, edges or drops.
    The stats file, written last, is the phase's commit: a phase killed before it starts over.
    """
    import ray

    name = f"global{k}-{j}-{g.name}"
    drops = DropSet(out, g.name, f"_{name}")
    if out.exists("_work", f"{name}.json"):
        log.info("%s: already done", name)
        return drops, StageStats.model_validate(out.read_json("_work", f"{name}.json"))
    drops.clear()
    started = time.perf_counter()
    load = ray.remote(num_cpus=1)(_load_keys)
    refs = [load.remote(out, k, u, list(g.key_columns), prior) for u in units]
    nbytes = ray.get([ray.remote(_sizes).remote(r) for r in refs])
    parts = max(2, _workers(cfg))
    summary = g.run_distributed(refs, tasks=RayTasks(), num_partitions=parts, sink=drops)  # the stage's cluster work
    docs_in = sum(n for n, _ in nbytes)
    bytes_in = sum(b for _, b in nbytes)
    dropped_bytes = sum(ray.get([ray.remote(_dropped_bytes).remote(r, drops, u.index) for r, u in zip(refs, units)]))
    stats = StageStats(docs_in=docs_in, docs_kept=docs_in - summary["rows"], docs_rejected=summary["rows"],
                       bytes_in=bytes_in, bytes_out=bytes_in - dropped_bytes,
                       seconds=time.perf_counter() - started, reasons=summary["reasons"],
                       # how the decision was computed: hash partitions and star rounds of the components
                       partitions=parts, component_rounds=summary.get("rounds", 0))
    out.write_json(stats.to_json(), "_work", f"{name}.json")
    log.info("%s: %d of %d rows dropped (%d component rounds)", name, summary["rows"], docs_in,
             stats.component_rounds)
    return drops, stats


def _sizes(t: pa.Table) -> tuple[int, int]:
    if not t.num_rows:
        return 0, 0
    return t.num_rows, int(pc.sum(t.column("_nbytes")).as_py() or 0)


def _dropped_bytes(t: pa.Table, drops: DropSet, unit_index: int) -> int:
    if not t.num_rows:
        return 0
    hit = pc.is_in(t.column(ROW_KEY), value_set=drops.for_unit(unit_index).column(ROW_KEY))
    return int(pc.sum(pc.filter(t.column("_nbytes"), hit)).as_py() or 0)


# --------------------------------------------------------------------------- final write


def _write_final(cfg: PipelineConfig, out: OutFS, units: list[WorkUnit], last: int,
                 last_drops: list[DropSet], stages: list[Stage],
                 global_stats: dict[str, StageStats], chash: str, *,
                 started_at: str | None = None,
                 timing: tuple[dict[str, float], float, float] | None = None) -> dict[str, Any]:
    import ray
    from tqdm import tqdm

    started = time.perf_counter()
    data = OutFS(cfg.output.path, cfg.output.storage_options)  # receives the kept shards, nothing else
    # 1. One schema for all shards, from each unit's Parquet footers (read by tasks).
    schema_task = ray.remote(num_cpus=1)(unit_schemas)
    kept_schemas, rej_schemas = [], []
    for kept_s, rej_s in ray.get([schema_task.remote(out, u.name, last) for u in units]):
        kept_schemas += kept_s
        rej_schemas += rej_s
    kept_schema = unify(kept_schemas or [pa.schema([("id", pa.string()), ("text", pa.string())])], KEPT_BASE)
    rej_schema = unify(rej_schemas + [pa.schema([(REJECT_STAGE, pa.string()), (REJECT_REASON, pa.string()),
                                                 (DUP_OF, pa.string())])], (REJECT_STAGE, REJECT_REASON, *KEPT_BASE))
    # 2. One write task per unit; the driver only collects their small summaries.
    fmt, comp, level = cfg.output.format, cfg.output.compression, cfg.output.compression_level
    drops_ref = ray.put(last_drops)
    task = ray.remote(num_cpus=1)(write_unit)
    pending = {task.remote(out, data, cfg.input, u.name, u.index, last, drops_ref, kept_schema, rej_schema, fmt,
                           comp, level, cfg.output.shard_bytes): u.index for u in units}
    summaries: dict[int, dict[str, Any]] = {}
    with tqdm(total=len(units), desc="write shards", unit="unit", disable=not cfg.progress, leave=False) as bar:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=min(len(pending), 64), timeout=1.0)
            for ref in ready:
                summaries[pending.pop(ref)] = ray.get(ref)
                bar.update(1)
    ordered = [summaries[u.index] for u in units]
    shards = [s for x in ordered for s in x["shards"]]
    rejected_shards = [s for x in ordered for s in x["rejected"]]
    if not shards:  # an empty run still has one (empty) shard with the schema
        ext = "parquet" if fmt == "parquet" else "arrow"
        shards = [write_shard(data, kept_schema.empty_table(), [f"part-000000-000.{ext}"], fmt, comp, level)]
    # 3. Shards of an earlier run at this path that this run did not write, and temporary
    # files of a write killed half-way (duckdb's ** glob would count a .tmp-*.parquet).
    written = {s["path"] for s in shards} | {s["path"] for s in rejected_shards}
    for name in data.ls():
        if (is_shard_name(name) and name not in written) or name.startswith(".tmp-"):
            data.rm(name)
    for name in out.ls(REJECTED):
        if f"{REJECTED}/{name}" not in written:
            out.rm(REJECTED, name)

    stage_stats = _stage_stats([p for x in ordered for p in x["stats"]], stages, global_stats)
    rows_out = sum(s["rows"] for s in shards)
    rows_rej = sum(s["rows"] for s in rejected_shards)
    rows_in = stage_stats[0][1].docs_in if stage_stats else 0
    problems = _check_accounting(stage_stats, rows_in, rows_out, rows_rej)
    manifest = {
        "config_hash": chash,
        "code_version": code_version(),
        "format": fmt,
        "compression": comp,
        "rows": rows_out,
        "text_bytes": sum(s["text_bytes"] for s in shards),
        "bytes": sum(s["bytes"] for s in shards),
        "shards": shards,
        "schema": [{"name": f.name, "type": str(f.type)} for f in kept_schema],
        "rejected": {"rows": rows_rej, "shards": rejected_shards},
        "input": {"rows": rows_in, "units": len(units), "files": sorted({u.path for u in units})},
        "stages": [{"stage": name, **st.to_json()} for name, st in stage_stats],
        "accounting": {"ok": not problems, "problems": problems,
                       "rule": "per stage docs_in = docs_kept + docs_rejected; input rows = kept + rejected"},
        "write_seconds": time.perf_counter() - started,
        **_timing(timing, time.perf_counter() - started),
        # the config (secrets redacted, no output path), library versions, start/end (UTC)
        "run": run_record(cfg, started_at=started_at),
    }
    out.write_bytes(dataset_card(manifest).encode(), CARD)
    manifest = dump_manifest(out, manifest)  # validated against the typed model, written last
    if problems:
        raise PipelineError("row accounting failed: " + "; ".join(problems))
    return manifest


def dataset_card(manifest: dict[str, Any]) -> str:
    """The run folder's Hugging Face dataset card: ``load_dataset(RUN)`` loads the rejected rows.

    It sits in ``OUT.curation`` (a card in ``OUT`` would stop ``pyarrow.dataset(OUT)``);
    ``datasets`` would otherwise read every Parquet file there, work files included.
    """
    stages = ", ".join(s["stage"] for s in manifest["stages"])
    return (f"---\nconfigs:\n- config_name: rejected\n  default: true\n  data_files:\n  - split: train\n"
            f"    path: \"{REJECTED}/part-*.parquet\"\n---\n"
            f"# Curated corpus: run folder\n\n{manifest['rows']:,} kept documents in {len(manifest['shards'])} "
            f"shard(s) sit in the output folder next to this one (the same path without `.curation`), alone, so "
            f"`load_dataset(OUT)` loads exactly them. Here: {manifest['rejected']['rows']:,} rejected documents, "
            f"each with its stage and reason (config `rejected`, `{REJECTED}/`), `manifest.json` (per-stage "
            f"figures, shard checksums, the run's config and versions) and the resume state (`{WORK}/`). "
            f"Stages: {stages}. Written by trinity-data {manifest['code_version']}.\n")


def _timing(timing: tuple[dict[str, float], float, float] | None, write_s: float) -> dict[str, Any]:
    """Wall seconds per phase, and the driver's own CPU seconds and peak memory (scale figures)."""
    if timing is None:
        return {}
    import resource

    phases, started, cpu_started = timing
    wall = time.perf_counter() - started
    return {"phases": {**{k: round(v, 3) for k, v in phases.items()}, "write": round(write_s, 3)},
            "driver": {"wall_s": round(wall, 3), "cpu_s": round(time.process_time() - cpu_started, 3),
                       "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}}


def _stage_stats(pieces: list[dict[str, Any]], stages: list[Stage],
                 global_stats: dict[str, StageStats]) -> list[tuple[str, StageStats]]:
    """Per-stage counters summed over every unit's (and phase's) stats pieces, ``read`` first."""
    total = UnitStats()
    for piece in pieces:
        total.merge(UnitStats.from_json(piece))
    for name, g in global_stats.items():  # a global stage's time includes its prepare part in the map phase
        total.stages[name] = g.plus_seconds(total.prepare.pop(name, 0.0))
    return [(name, total.stages.get(name, StageStats.empty()).ranked())
            for name in [READ_STAGE] + [s.name for s in stages]]


def _check_accounting(stats: list[tuple[str, StageStats]], rows_in: int, rows_out: int, rows_rej: int) -> list[str]:
    problems = []
    for i, (name, s) in enumerate(stats):
        if (problem := s.problem()) is not None:
            problems.append(f"{name}: {problem}")
        if i and s.docs_in != stats[i - 1][1].docs_kept:
            prev_name, prev = stats[i - 1]
            problems.append(f"{name}: {s.docs_in} in != {prev.docs_kept} kept by {prev_name}")
    if rows_in != rows_out + rows_rej:
        problems.append(f"input {rows_in} rows != {rows_out} kept + {rows_rej} rejected")
    if stats and stats[-1][1].docs_kept != rows_out:
        problems.append(f"last stage kept {stats[-1][1].docs_kept} but {rows_out} rows were written")
    return problems
