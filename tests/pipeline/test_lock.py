"""One writer per output folder: real concurrent processes, a kill -9'd holder, object stores.

Run: .venv/bin/python -m pytest tests/pipeline/test_lock.py -q
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml

from pipeline._lock import LOCK_NAME, OutputLock, OutputLocked, stale_reason

from pipeline_testutil import moto_bucket

REPO = Path(__file__).resolve().parents[2]

HOLD = textwrap.dedent("""
    import sys, time
    from pipeline._lock import OutputLock
    lock = OutputLock(sys.argv[1], job="holder").acquire()
    print("held", flush=True)
    time.sleep(120)
""")


def _holder(folder: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    line = proc.stdout.readline().decode()
    assert line.strip() == "held", proc.stderr.read().decode()
    return proc


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)


def test_second_process_is_refused_and_a_killed_holder_is_taken_over(tmp_path, caplog):
    out = tmp_path / "out"
    holder = _holder(out)
    try:
        info = json.loads((out / LOCK_NAME).read_text())
        assert info["pid"] == holder.pid and info["host"] == socket.gethostname() and info["job"] == "holder"
        # A second, real process: refused at once, the folder and the holder named.
        second = subprocess.run([sys.executable, "-c", HOLD, str(out)], cwd=REPO, capture_output=True,
                                timeout=60)
        assert second.returncode != 0 and b"held" not in second.stdout
        err = second.stderr.decode()
        assert f"OutputLocked: {out} is in use by another holder (host {socket.gethostname()}, pid {holder.pid}" in err
        # And in this process too.
        with pytest.raises(OutputLocked, match=f"pid {holder.pid}"):
            OutputLock(out).acquire()
    finally:
        _kill(holder)  # kill -9: the lock stays behind
    assert (out / LOCK_NAME).exists()
    with caplog.at_level(logging.WARNING, logger="pipeline._lock"):
        with OutputLock(out, job="next") as lock:
            assert json.loads((out / LOCK_NAME).read_text())["token"] == lock.token
    assert f"taking over a stale lock of holder (host {socket.gethostname()}, pid {holder.pid}" in caplog.text
    assert f"its process {holder.pid} on this host" in caplog.text
    assert not (out / LOCK_NAME).exists()  # released on exit


def test_stale_rules_for_other_hosts_reused_pids_and_unreadable_locks(tmp_path, caplog):
    now = time.time()
    other = {"host": "node-7", "pid": 1, "heartbeat": now - 30}
    assert stale_reason(other, stale_after_s=600, now=now) is None  # fresh heartbeat elsewhere: alive
    assert "no heartbeat from host node-7 for 700s" in stale_reason({**other, "heartbeat": now - 700},
                                                                   stale_after_s=600, now=now)
    me = {"host": socket.gethostname(), "pid": os.getpid()}
    assert stale_reason(me) is None
    assert "is gone" in stale_reason({**me, "pid_start": -5})  # the pid now belongs to another process
    (tmp_path / LOCK_NAME).write_text("{half a lo")  # a holder killed mid-write
    with caplog.at_level(logging.WARNING, logger="pipeline._lock"):
        OutputLock(tmp_path).acquire().release()
    assert "it is unreadable" in caplog.text


def test_heartbeat_refreshes_the_lock(tmp_path):
    lock = OutputLock(tmp_path, heartbeat_s=0.05).acquire()
    try:
        first = json.loads((tmp_path / LOCK_NAME).read_text())["heartbeat"]
        deadline = time.time() + 10
        while json.loads((tmp_path / LOCK_NAME).read_text())["heartbeat"] == first and time.time() < deadline:
            time.sleep(0.05)
        assert json.loads((tmp_path / LOCK_NAME).read_text())["heartbeat"] > first
    finally:
        lock.release()


def test_lock_on_s3_uses_an_exclusive_create(tmp_path):
    pytest.importorskip("moto.server")
    pytest.importorskip("s3fs")
    with moto_bucket("locks") as opts:
        first = OutputLock("s3://locks/run", opts, job="curate").acquire()
        with pytest.raises(OutputLocked, match=r"s3://locks/run is in use by another curate"):
            OutputLock("s3://locks/run", opts).acquire()
        first.release()
        OutputLock("s3://locks/run", opts).acquire().release()


def test_two_curate_runs_on_one_folder(tmp_path, corpus_rows, jsonl_writer):
    """The CLI refuses a second curate run while a live process holds the folder."""
    inp = jsonl_writer(tmp_path / "docs.jsonl", corpus_rows[:20])
    out = tmp_path / "out"
    cfg = tmp_path / "curate.yaml"
    cfg.write_text(yaml.safe_dump({"input": {"paths": [str(inp)]}, "output": {"path": str(out)},
                                   "stages": ["normalize"], "progress": False, "ray": {"num_cpus": 1}}))
    holder = _holder(Path(f"{out}.curation"))  # stands for the first run, mid-way (the lock is in the run folder)
    try:
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        started = time.perf_counter()
        second = subprocess.run([sys.executable, "-m", "jobs.cli", "curate", "--config", str(cfg)], cwd=REPO,
                                env=env, capture_output=True, timeout=300, start_new_session=True)
        seconds = time.perf_counter() - started
    finally:
        _kill(holder)
    log = second.stderr.decode() + second.stdout.decode()
    assert second.returncode == 1, log[-2000:]
    assert f"{out}.curation is in use by another holder (host {socket.gethostname()}, pid {holder.pid}" in log
    assert not (tmp_path / "out.curation" / "_work").exists() and not out.exists()  # nothing was touched
    print(f"\nsecond curate run refused after {seconds:.1f}s (incl. interpreter and Ray start)")


def test_tokenize_job_and_tokenizer_trainer_take_the_lock(tmp_path, corpus_rows, jsonl_writer):
    from tokenizer.tokenize_job import TokenizeConfig, tokenize_to_shards

    inp = jsonl_writer(tmp_path / "docs.jsonl", corpus_rows[:5], bad=False)
    tokens, tok = tmp_path / "tokens", tmp_path / "tok"
    holders = [_holder(tokens), _holder(tok)]
    try:
        with pytest.raises(OutputLocked, match=f"{tokens} is in use by another holder"):
            tokenize_to_shards(TokenizeConfig(tokenizer=str(tmp_path / "none"), inputs=[str(inp)], output=str(tokens), source="web"))
        trainer = subprocess.run([sys.executable, "-m", "jobs.cli", "tokenizer", "train", "--input", str(inp),
                                  "--vocab-size", "3000", "--out", str(tok)], cwd=REPO, capture_output=True,
                                 timeout=120)
    finally:
        for h in holders:
            _kill(h)
    assert trainer.returncode != 0
    assert f"{tok} is in use by another holder" in (trainer.stderr + trainer.stdout).decode()
    assert not (tok / "tokenizer.json").exists()
