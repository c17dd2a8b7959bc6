"""Each job entrypoint on a real local Ray cluster with tiny data, and one `ray job submit` to a
Ray head the test starts on 127.0.0.1.

    .venv/bin/python -m pytest tests/jobs/test_job_runs.py -q
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import signal
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from jobs.loopback import free_port, job_server_available

REPO = Path(__file__).resolve().parents[2]
N_DOCS, N_DUPS = 90, 4  # see conftest.tiny_docs
VOCAB = 2600


def write_yaml(path: Path, doc: dict) -> Path:
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def summary_of(out: str) -> dict[str, str]:
    lines = [ln for ln in out.splitlines() if ln.startswith("trinity-data job=")]
    assert lines, f"no summary line in:\n{out[-3000:]}"
    return dict(kv.split("=", 1) for kv in shlex.split(lines[-1])[1:])


def curate_config(tmp: Path, docs: Path, out: Path, stages: list, unit_rows: int = 50) -> Path:
    return write_yaml(tmp / f"{out.name}.yaml", {
        "input": {"paths": [str(docs)], "unit_rows": unit_rows, "rename": {"lang": "lang_label"}},
        "output": {"path": str(out), "shard_bytes": "100KB"},
        "stages": stages,
        "progress": False,
    })


def test_curate_then_train_tokenizer_then_tokenize(ray_cluster, tiny_docs, tmp_path, capsys):
    from jobs import curate, tokenize, train_tokenizer

    curated = tmp_path / "curated"
    cfg = curate_config(tmp_path, tiny_docs, curated, ["normalize", "exact_dedup"])
    assert curate.main(["--config", str(cfg)]) == 0
    s = summary_of(capsys.readouterr().out)
    assert s["status"] == "succeeded"
    assert (int(s["docs_in"]), int(s["docs_out"]), int(s["rejected"])) == (N_DOCS + N_DUPS, N_DOCS, N_DUPS)
    assert int(s["units"]) == 2 and int(s["shards"]) >= 2
    manifest = json.loads((tmp_path / "curated.curation" / "manifest.json").read_text())  # the run folder
    stats = json.loads((tmp_path / "curated.curation" / "curate.job.json").read_text())
    assert stats["status"] == "succeeded" and stats["stats"]["manifest"] == manifest
    assert stats["ray_resources"]["CPU"] == ray_cluster.cluster_resources()["CPU"]
    reasons = {s["stage"]: s["reasons"] for s in manifest["stages"]}
    assert sum(reasons["exact_dedup"].values()) == N_DUPS

    # a rerun of the same config is a no-op that says so
    assert curate.main(["--config", str(cfg)]) == 0
    again = summary_of(capsys.readouterr().out)
    assert again["already_complete"] == "True" and again["docs_out"] == s["docs_out"]

    tok_dir = tmp_path / "tokenizer"
    tcfg = write_yaml(tmp_path / "tok.yaml", {"inputs": [str(curated / "part-*.parquet")], "vocab_size": VOCAB, "min_frequency": 1,
                                               "workers": 1, "output": str(tok_dir)})
    assert train_tokenizer.main(["--config", str(tcfg)]) == 0
    t = summary_of(capsys.readouterr().out)
    assert t["status"] == "succeeded" and int(t["docs"]) == N_DOCS

    tokens = tmp_path / "tokens"
    kcfg = write_yaml(tmp_path / "tokenize.yaml", {"tokenizer": str(tok_dir), "inputs": [str(curated / "part-*.parquet")],
                                                    "output": str(tokens), "workers": 2})
    assert tokenize.main(["--config", str(kcfg)]) == 0
    k = summary_of(capsys.readouterr().out)
    assert k["status"] == "succeeded" and int(k["rows"]) == N_DOCS and int(k["rejected"]) == 0
    per_source = {p.parent.name: json.loads(p.read_text())["num_tokens"] for p in tokens.glob("*/manifest.json")}
    assert int(k["tokens"]) == sum(per_source.values()) > 0 and int(k["sources"]) == len(per_source)
    kstats = json.loads((tokens / "tokenize.job.json").read_text())
    assert kstats["stats"]["tokens_per_source"] == per_source


def test_tokenize_with_a_broken_tokenizer_fails_before_any_worker(ray_cluster, tmp_path, capsys):
    from jobs import tokenize

    (tmp_path / "tok").mkdir()
    (tmp_path / "tok" / "tokenizer.json").write_text("{not json")
    cfg = write_yaml(tmp_path / "k.yaml", {"tokenizer": str(tmp_path / "tok"), "inputs": [str(tmp_path)],
                                            "output": str(tmp_path / "tokens")})
    assert tokenize.main(["--config", str(cfg)]) == 2
    s = summary_of(capsys.readouterr().out)
    assert s["status"] == "config_error" and "not a valid tokenizer.json" in s["error"]
    assert not (tmp_path / "tokens" / "_units").exists()

    cfg = write_yaml(tmp_path / "k2.yaml", {"tokenizer": "s3://b/tok", "inputs": ["x"], "output": "o"})
    assert tokenize.main(["--config", str(cfg)]) == 2
    assert "tokenizer: s3://b/tok must be a local or shared-mount path" in summary_of(capsys.readouterr().out)["error"]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from pipeline.rephrase.tiny import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("tiny_model"), context_length=512)


@pytest.mark.parametrize("job,stage", [
    ("rephrase", {"rephrase": {"styles": ["wikipedia"], "sampling": {"max_tokens": 16}}}),
    ("score", {"score": {"sampling": {"max_tokens": 8, "temperature": 0.0}, "threshold": 3}}),
])
def test_model_jobs_on_a_tiny_model(ray_cluster, tiny_docs, tiny_model, tmp_path, capsys, job, stage):
    """rephrase/score with the transformers engine on a tiny random model (CPU): every document
    ends up kept or rejected with a reason, and the summary counts the model stage."""
    import importlib

    (name, opts), = stage.items()
    opts["engine"] = {"backend": "transformers", "model": str(tiny_model), "device": "cpu"}
    out = tmp_path / job
    docs = tmp_path / "few.jsonl"
    docs.write_text("".join(tiny_docs.read_text().splitlines(keepends=True)[:6]))
    cfg = curate_config(tmp_path, docs, out, [stage], unit_rows=3)
    mod = importlib.import_module(f"jobs.{job}")
    code = mod.main(["--config", str(cfg)])
    s = summary_of(capsys.readouterr().out)
    assert code == 0, s
    assert s["status"] == "succeeded" and int(s[f"{name}_in"]) == 6
    assert int(s[f"{name}_kept"]) + int(s[f"{name}_rejected"]) == 6
    manifest = json.loads((tmp_path / f"{job}.curation" / "manifest.json").read_text())
    assert manifest["accounting"]["ok"]

    # a config without the job's model stage is refused before any work
    bad = curate_config(tmp_path, docs, tmp_path / "plain", ["normalize"])
    assert mod.main(["--config", str(bad)]) == 2
    assert f"the {job} job needs a" in summary_of(capsys.readouterr().out)["error"]


# ----------------------------------------------------------------------------- ray job submit


@pytest.fixture
def ray_head(tmp_path):
    """A Ray head with the job server on 127.0.0.1 (token auth on), in its own process group.

    Torn down by signalling that group only: ``ray stop`` would also stop other Ray clusters on
    the machine. ``--temp-dir`` keeps it out of /tmp/ray, so a plain ``ray.init()`` elsewhere
    does not find and join it.
    """
    dash = free_port()
    # Ray's socket paths must stay under 108 bytes, so not under pytest's long tmp_path.
    temp_dir = tempfile.mkdtemp(prefix="trh-")
    env = dict(os.environ)
    env.update(
        RAY_AUTH_MODE="token",
        RAY_AUTH_TOKEN=secrets.token_hex(32),
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",  # `python` = this venv
    )
    env.pop("RAY_ADDRESS", None)
    cmd = [str(Path(sys.executable).parent / "ray"), "start", "--head", "--block",
           f"--port={free_port()}", "--node-ip-address=127.0.0.1", "--include-dashboard=true",
           "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}", "--num-cpus=1",
           # Fixed default ports (52365 for the agent...) clash with other Ray clusters on the host.
           f"--dashboard-agent-listen-port={free_port()}", f"--dashboard-agent-grpc-port={free_port()}",
           f"--runtime-env-agent-port={free_port()}", f"--metrics-export-port={free_port()}",
           f"--ray-client-server-port={free_port()}", "--object-store-memory=200000000",
           f"--temp-dir={temp_dir}", "--disable-usage-stats"]
    log = open(tmp_path / "head.log", "w")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    address = f"http://127.0.0.1:{dash}"
    try:
        deadline = time.monotonic() + 90
        while True:
            res = subprocess.run([cmd[0], "job", "list", "--address", address], env=env,
                                 capture_output=True, text=True)
            if res.returncode == 0:
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"Ray head did not come up:\n{(tmp_path / 'head.log').read_text()[-3000:]}")
            time.sleep(1)
        yield address, env
    finally:
        for sig, wait in ((signal.SIGTERM, 3), (signal.SIGKILL, 5)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(timeout=wait)
                time.sleep(1)  # let the group's other members exit too
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # anything of the group still alive
        except ProcessLookupError:
            pass
        log.close()
        shutil.rmtree(temp_dir, ignore_errors=True)


def _submit(cmd: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    """`ray job submit`, retried while the head's agent has not registered yet (slow on a busy machine)."""
    deadline = time.monotonic() + 90
    while True:
        res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=200)
        if "No available agent" not in res.stdout + res.stderr or time.monotonic() > deadline:
            return res
        time.sleep(2)


@pytest.mark.skipif(not job_server_available(), reason="the job server needs ray[default] (pip install 'ray[default]')")
@pytest.mark.timeout(480)
def test_ray_job_submit_to_a_loopback_head(ray_head, tiny_docs, tmp_path):
    """`ray job submit --working-dir ... -- python -m jobs.train_tokenizer --config <relative>`:
    the config travels in the working dir, counting runs as Ray tasks on the submitted-to cluster."""
    address, env = ray_head
    ray_bin = str(Path(sys.executable).parent / "ray")
    work = tmp_path / "work"
    work.mkdir()
    out = tmp_path / "tokenizer"
    write_yaml(work / "tok.yaml", {"inputs": [str(tiny_docs)], "vocab_size": VOCAB, "min_frequency": 1,
                                   "route": "counts", "backend": "ray", "workers": 1, "output": str(out)})
    sub_id = f"trinity-test-{secrets.token_hex(4)}"
    res = _submit(
        [ray_bin, "job", "submit", "--address", address, "--submission-id", sub_id, "--working-dir", str(work),
         "--runtime-env-json", json.dumps({"env_vars": {"TRINITY_LOG_LEVEL": "INFO"}}),
         "--", "python", "-m", "jobs.train_tokenizer", "--config", "tok.yaml"],
        env,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    status = subprocess.run([ray_bin, "job", "status", "--address", address, sub_id], env=env,
                            capture_output=True, text=True, timeout=60)
    assert f"Job '{sub_id}' succeeded" in status.stdout + status.stderr
    s = summary_of(res.stdout)  # the driver's stdout, streamed back by `ray job submit`
    assert s["status"] == "succeeded" and int(s["vocab_reached"]) == VOCAB
    stats = json.loads((out / "train_tokenizer.job.json").read_text())
    assert stats["ray_resources"]["CPU"] == 1.0  # joined the submitted-to head (num-cpus=1)
    assert stats["config_uri"] == "tok.yaml" and stats["stats"]["counts"]

    # a failing job makes `ray job submit` fail too, and the job reads FAILED
    bad_id = f"trinity-test-{secrets.token_hex(4)}"
    res = _submit(
        [ray_bin, "job", "submit", "--address", address, "--submission-id", bad_id, "--working-dir", str(work),
         "--", "python", "-m", "jobs.train_tokenizer", "--config", "tok.yaml", "--set", "vocab_size=10"],
        env,
    )
    assert res.returncode != 0
    status = subprocess.run([ray_bin, "job", "status", "--address", address, bad_id], env=env,
                            capture_output=True, text=True, timeout=60)
    assert f"Job '{bad_id}' failed" in status.stdout + status.stderr
