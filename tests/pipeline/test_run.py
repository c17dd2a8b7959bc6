"""End to end on a real local Ray cluster: accounting, rejected rows, loading, dedup quality, resume, S3.

Run: .venv/bin/python -m pytest tests/pipeline/test_run.py -q -s   (-s shows precision/recall)
"""

from __future__ import annotations

import glob
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from pipeline.config import parse_config
from pipeline.runner import run_pipeline

from pipeline_testutil import moto_bucket

REPO = Path(__file__).resolve().parents[2]

STAGES = [
    {"normalize": {}},
    {"langid": {"prefix_chars": 300}},
    {"quality": {"only": {"source": ["web-docs", "docs-rst"]}}},
    "exact_dedup",
    "minhash_dedup",
]


def config(inp: Path, out: Path, **over) -> dict:
    cfg = {"input": {"paths": [str(inp)], "rename": {"lang": "lang_label"}, "unit_rows": 40},
           "output": {"path": str(out), "shard_bytes": 150_000}, "stages": STAGES,
           "ray": {"workers": 2}, "progress": False}
    for k, v in over.items():
        cfg[k] = {**cfg.get(k, {}), **v} if isinstance(v, dict) else v
    return cfg


def test_end_to_end(tmp_path, ray_cluster, corpus_rows, jsonl_writer):
    code = next(r for r in corpus_rows if r["source"].startswith("code-"))  # no quality rules apply to code
    rows = corpus_rows + [dict(code, id="~copy")]  # one exact duplicate
    inp = jsonl_writer(tmp_path / "docs.jsonl", rows)
    out = tmp_path / "out"
    result = run_pipeline(parse_config(config(inp, out)))
    m = result.manifest
    assert m["accounting"]["ok"], m["accounting"]
    assert m["input"]["rows"] == len(rows) + 3 == m["rows"] + m["rejected"]["rows"]
    by_stage = {s["stage"]: s for s in m["stages"]}
    assert by_stage["read"]["docs_rejected"] == 3
    assert by_stage["exact_dedup"]["reasons"] == {"exact_duplicate": 1}
    assert by_stage["quality"]["docs_rejected"] > 0
    for s in m["stages"]:
        assert s["docs_in"] == s["docs_kept"] + s["docs_rejected"]
    # Shards: names, sizes, checksums; loadable by pyarrow and datasets as they are.
    files = sorted(glob.glob(str(out / "part-*.parquet")))
    assert [Path(f).name for f in files] == [Path(s["path"]).name for s in m["shards"]] and len(files) > 1
    table = pq.read_table(files)
    assert table.num_rows == m["rows"]
    assert {"id", "text", "lang", "source", "lang_score", "gq_words"} <= set(table.column_names)
    assert not any(c.startswith("_") for c in table.column_names)
    assert code["id"] in table.column("id").to_pylist() and "~copy" not in table.column("id").to_pylist()
    # A folder reader (the tokenize job) sees exactly the kept shards (the output folder holds
    # nothing else; the four common readers are checked in test_output_readers.py).
    from tokenizer.tokenize_job import list_inputs

    assert sorted(list_inputs(str(out))) == files
    assert sorted(p.name for p in out.iterdir()) == [Path(f).name for f in files]
    datasets = pytest.importorskip("datasets")
    ds = datasets.load_dataset("parquet", data_files=files, split="train")
    assert len(ds) == m["rows"] and isinstance(ds[0]["text"], str)
    run = Path(f"{out}.curation")  # the run folder: rejected rows, manifest, card, work state
    rej = pq.read_table(sorted(glob.glob(str(run / "rejected" / "*.parquet"))))
    assert rej.num_rows == m["rejected"]["rows"]
    read_rej = [r for r in rej.to_pylist() if r["reject_stage"] == "read"]
    assert sorted(r["source_line"] for r in read_rej) == [3, 5, 7]
    assert all(r["reject_reason"] for r in rej.to_pylist())
    # Same config again: nothing to do.
    again = run_pipeline(parse_config(config(inp, out)))
    assert again.already_complete


def planted(n_base: int = 60, n_dups: int = 30, seed: int = 7) -> tuple[list[dict], set[str]]:
    rng = random.Random(seed)
    # Letters only: MinHash folds digits to 0, as DataTrove does, so "w1" and "w2" would look alike.
    vocab = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 9))) for _ in range(3000)]
    rows, dups = [], set()
    for i in range(n_base):
        rows.append({"id": f"base-{i:03d}", "text": " ".join(rng.choice(vocab) for _ in range(300))})
    for j in range(n_dups):
        words = rows[j]["text"].split()
        for k in rng.sample(range(len(words)), 3):  # 1% of the words changed
            words[k] = rng.choice(vocab)
        rows.append({"id": f"dup-{j:03d}", "text": " ".join(words)})
        dups.add(f"dup-{j:03d}")
    rng.shuffle(rows)
    return rows, dups


def test_minhash_planted_near_duplicates(tmp_path, ray_cluster):
    rows, dups = planted()
    inp = tmp_path / "planted.jsonl"
    inp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = config(inp, tmp_path / "out", stages=["minhash_dedup"], input={"unit_rows": 25, "rename": {}})
    m = run_pipeline(parse_config(cfg)).manifest
    rej = pq.read_table(glob.glob(str(tmp_path / "out.curation" / "rejected" / "*.parquet")))
    dropped = set(rej.column("id").to_pylist())
    tp = len(dropped & dups)
    precision = tp / len(dropped) if dropped else 0.0
    recall = tp / len(dups)
    print(f"\nminhash planted near-duplicates: {len(dups)} planted, {len(dropped)} dropped, "
          f"precision {precision:.3f}, recall {recall:.3f}")
    assert precision >= 0.95 and recall >= 0.9
    # The survivor of each pair is the smallest id ("base-..." < "dup-...").
    assert all(d.startswith("base-") for d in rej.column("dup_of").to_pylist())
    assert m["accounting"]["ok"]


def _run_cli(cfg_path: Path, **kw) -> subprocess.Popen:
    env = dict(os.environ, RAY_ADDRESS="", PYTHONUNBUFFERED="1")
    env.pop("RAY_ADDRESS")
    return subprocess.Popen([sys.executable, "-m", "jobs.cli", "curate", "--config", str(cfg_path)], cwd=REPO,
                            env=env, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kw)


def _cleanup(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the orphaned local Ray processes this driver started
    except ProcessLookupError:
        pass


@pytest.mark.slow
def test_kill_and_resume(tmp_path, ray_cluster, corpus_rows, jsonl_writer):
    inp = jsonl_writer(tmp_path / "docs.jsonl", corpus_rows)
    killed_out, ref_out = tmp_path / "killed", tmp_path / "ref"
    killed_run = tmp_path / "killed.curation"  # its run folder: work state and manifest
    cfg = config(inp, killed_out, input={"unit_rows": 10}, ray={"workers": 1, "num_cpus": 1},
                 stages=["normalize", "quality", "exact_dedup"])
    cfg_path = tmp_path / "curate.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    proc = _run_cli(cfg_path)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and len(glob.glob(str(killed_run / "_work" / "map0" / "*.done"))) < 2:
            if proc.poll() is not None:
                pytest.fail("curate finished before it could be killed: " + proc.stdout.read().decode()[-2000:])
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)  # kill -9 of the driver, mid-run
        proc.wait(timeout=30)
    finally:
        _cleanup(proc)
    done_before = len(glob.glob(str(killed_run / "_work" / "map0" / "*.done")))
    total_units = len(json.loads((killed_run / "_work" / "run.json").read_text())["state"]["units"])
    assert 2 <= done_before < total_units and not (killed_run / "manifest.json").exists()

    resumed = _run_cli(cfg_path)
    try:
        log = resumed.communicate(timeout=300)[0].decode()
    finally:
        _cleanup(resumed)
    assert resumed.returncode == 0, log[-3000:]
    assert "units reused" in log
    reference = run_pipeline(parse_config(dict(cfg, output={**cfg["output"], "path": str(ref_out)}))).manifest
    resumed_m = json.loads((killed_run / "manifest.json").read_text())
    assert [s["sha256"] for s in resumed_m["shards"]] == [s["sha256"] for s in reference["shards"]]
    assert [s["sha256"] for s in resumed_m["rejected"]["shards"]] == [s["sha256"] for s in reference["rejected"]["shards"]]
    assert resumed_m["config_hash"] == reference["config_hash"]  # output location is not part of the hash
    # Nothing but kept shards in the output folder, even after a kill mid-run (no .tmp-* left).
    assert sorted(p.name for p in killed_out.iterdir()) == sorted(s["path"] for s in resumed_m["shards"])


def test_s3_end_to_end(tmp_path, ray_cluster, corpus_rows, jsonl_writer):
    pytest.importorskip("moto.server")
    s3fs = pytest.importorskip("s3fs")
    with moto_bucket("curation") as opts:
        fs = s3fs.S3FileSystem(**opts)
        local = jsonl_writer(tmp_path / "docs.jsonl", corpus_rows[:40])
        fs.put(str(local), "curation/in/docs.jsonl")
        cfg = config("s3://curation/in/docs.jsonl", "s3://curation/out", stages=["normalize", "exact_dedup"],
                     input={"storage_options": opts, "unit_rows": 20, "rename": {}},
                     output={"storage_options": opts})
        m = run_pipeline(parse_config(cfg)).manifest
        assert m["accounting"]["ok"] and m["rows"] == 40 and m["rejected"]["rows"] == 3
        fs.invalidate_cache()
        assert fs.exists("curation/out.curation/manifest.json") and not fs.exists("curation/out/manifest.json")
        shards = sorted(fs.glob("curation/out/part-*.parquet"))
        total = 0
        for shard in shards:
            with fs.open(shard, "rb") as f:
                total += pq.read_table(f).num_rows
        assert total == 40
        rej = []
        for shard in sorted(fs.glob("curation/out.curation/rejected/part-*.parquet")):
            with fs.open(shard, "rb") as f:
                rej.append(pq.read_table(f))
        rej = pa.concat_tables(rej)
        assert sorted(rej.column("source_line").to_pylist()) == [3, 5, 7]
        assert set(rej.column("source_file").to_pylist()) == {"s3://curation/in/docs.jsonl"}
