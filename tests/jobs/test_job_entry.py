"""The shared job contract (``jobs._entry``): config from any fsspec URI, exit codes, the
one-line summary and the stats file. These run the train-tokenizer job, which needs no Ray
with its default backend, so they stay fast; the Ray-backed jobs are in test_job_runs.py.

    .venv/bin/python -m pytest tests/jobs/test_job_entry.py -q
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from jobs import _entry
from jobs import train_tokenizer as train_job

REPO = Path(__file__).resolve().parents[2]
VOCAB = 2600  # just above the 2482 ids the trinity pre-tokenizer reserves


def write_yaml(path: Path, doc: dict) -> Path:
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def summary_of(out: str) -> dict[str, str]:
    lines = [ln for ln in out.splitlines() if ln.startswith("trinity-data job=")]
    assert len(lines) == 1, f"expected one summary line, got:\n{out[-2000:]}"
    return dict(kv.split("=", 1) for kv in shlex.split(lines[0])[1:])


def tok_config(tmp_path: Path, docs: Path, **extra) -> Path:
    doc = {"inputs": [str(docs)], "vocab_size": VOCAB, "min_frequency": 1, "workers": 1,
           "output": str(tmp_path / "tok"), **extra}
    return write_yaml(tmp_path / "tok.yaml", doc)


def test_summary_line_is_one_parseable_line():
    error = "\x1b[36mray::Map()\x1b[39m bad 'x'\n  more"
    line = _entry.summary_line("curate", "failed", 1.25, {"docs": 3, "rate": 0.5, "error": error, "n": None})
    assert "\n" not in line and "\x1b" not in line
    fields = dict(kv.split("=", 1) for kv in shlex.split(line)[1:])
    assert fields == {"job": "curate", "status": "failed", "elapsed_s": "1.2", "docs": "3", "rate": "0.5",
                      "error": "ray::Map() bad 'x' more"}


def test_describe_error_names_the_root_cause():
    remote = RuntimeError(
        "ray::MapWorker.submit() (pid=1)\n  File \"x.py\", line 3\n"
        "TypeError: the JSON object must be str, not StringScalar\n\n"
        "The above exception was the direct cause of the following exception:\n"
        "ray.exceptions.UserCodeException: UDF failed to process a data block."
    )
    assert _entry.describe_error(remote) == "TypeError: the JSON object must be str, not StringScalar"
    try:
        try:
            raise KeyError("inner")
        except KeyError as e:
            raise ValueError("outer") from e
    except ValueError as e:
        assert _entry.describe_error(e) == "KeyError: 'inner'"


def test_load_mapping_applies_overrides_and_names_problems(tmp_path):
    cfg = write_yaml(tmp_path / "c.yaml", {"output": {"path": "a"}, "vocab_size": 5})
    raw = _entry.load_mapping(str(cfg), ["output.path=s3://b/x", "vocab_size=7", "ray.num_cpus=2"])
    assert raw == {"output": {"path": "s3://b/x"}, "vocab_size": 7, "ray": {"num_cpus": 2}}
    with pytest.raises(_entry.ConfigError, match="config file not found"):
        _entry.load_mapping(str(tmp_path / "missing.yaml"))
    (tmp_path / "bad.yaml").write_text("a: [1,\n")
    with pytest.raises(_entry.ConfigError, match="bad.yaml: not valid YAML"):
        _entry.load_mapping(str(tmp_path / "bad.yaml"))
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(_entry.ConfigError, match="expected a mapping at the top level, got list"):
        _entry.load_mapping(str(tmp_path / "list.yaml"))
    with pytest.raises(_entry.ConfigError, match="expected KEY=VALUE"):
        _entry.load_mapping(str(cfg), ["novalue"])
    with pytest.raises(_entry.ConfigError, match="vocab_size is not a mapping"):
        _entry.load_mapping(str(cfg), ["vocab_size.x=1"])


def test_train_tokenizer_job_succeeds_with_summary_and_stats(tmp_path, tiny_docs, capsys):
    cfg = tok_config(tmp_path, tiny_docs)
    assert train_job.main(["--config", str(cfg)]) == 0
    s = summary_of(capsys.readouterr().out)
    assert s["job"] == "train_tokenizer" and s["status"] == "succeeded"
    assert s["vocab_reached"] == str(VOCAB) and int(s["docs"]) == 94
    out = tmp_path / "tok"
    assert s["output"] == str(out) and s["stats"] == str(out / "train_tokenizer.job.json")
    stats = json.loads((out / "train_tokenizer.job.json").read_text())
    assert stats["status"] == "succeeded" and stats["error"] is None and stats["config_uri"] == str(cfg)
    assert stats["config"]["vocab_size"] == VOCAB and stats["stats"]["vocab_reached"] == VOCAB
    assert stats["summary"]["docs"] == 94 and stats["elapsed_s"] > 0
    from tokenizer import load

    assert load(out).get_vocab_size() == VOCAB


def test_config_errors_exit_2_before_any_work(tmp_path, tiny_docs, capsys):
    cfg = tok_config(tmp_path, tiny_docs, vocab_sise=3000)  # typo'd key
    assert train_job.main(["--config", str(cfg)]) == 2
    s = summary_of(capsys.readouterr().out)
    assert s["status"] == "config_error" and "vocab_sise: Extra inputs are not permitted" in s["error"]
    assert not (tmp_path / "tok").exists()

    cfg = tok_config(tmp_path, tiny_docs)
    assert train_job.main(["--config", str(cfg), "--set", "vocab_size=100"]) == 2
    assert "vocab_size=100 is below" in summary_of(capsys.readouterr().out)["error"]

    assert train_job.main(["--config", str(tmp_path / "nope.yaml")]) == 2
    assert "config file not found" in summary_of(capsys.readouterr().out)["error"]

    # found only when the run starts: still a config problem, and the stats say so
    cfg = tok_config(tmp_path, tmp_path / "no-such-input.jsonl")
    assert train_job.main(["--config", str(cfg)]) == 2
    s = summary_of(capsys.readouterr().out)
    assert s["status"] == "config_error" and "no-such-input" in s["error"]
    assert json.loads((tmp_path / "tok" / "train_tokenizer.job.json").read_text())["status"] == "config_error"


def test_check_validates_without_running(tmp_path, tiny_docs, capsys):
    cfg = tok_config(tmp_path, tiny_docs)
    assert train_job.main(["--config", str(cfg), "--check"]) == 0
    s = summary_of(capsys.readouterr().out)
    assert s["status"] == "config_ok" and s["output"] == str(tmp_path / "tok")
    assert not (tmp_path / "tok").exists()


def test_runtime_failure_exits_1_and_still_writes_stats(tmp_path, tiny_docs, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    cfg = tok_config(tmp_path, tiny_docs, output=str(blocker / "tok"))  # output under a regular file
    stats = tmp_path / "elsewhere" / "stats.json"
    assert train_job.main(["--config", str(cfg), "--stats", str(stats)]) == 1
    s = summary_of(capsys.readouterr().out)
    assert s["status"] == "failed" and "a-file" in s["error"] and s["stats"] == str(stats)
    doc = json.loads(stats.read_text())
    assert doc["status"] == "failed" and "a-file" in doc["error"]

    # when the stats file itself cannot be written, the job's own status still decides
    assert train_job.main(["--config", str(cfg)]) == 1
    assert summary_of(capsys.readouterr().out)["stats"] == "unwritten"


def test_config_output_and_stats_on_s3(tmp_path, tiny_docs, capsys, s3_env):
    """Config, inputs and outputs on s3:// through moto's S3 server on 127.0.0.1."""
    import fsspec

    s3_env("trinity-jobs")
    fs = fsspec.filesystem("s3", skip_instance_cache=True)
    fs.put(str(tiny_docs), "trinity-jobs/data/docs.jsonl")
    cfg = {"inputs": ["s3://trinity-jobs/data/docs.jsonl"], "vocab_size": VOCAB, "min_frequency": 1,
           "output": "s3://trinity-jobs/tokenizers/v1"}
    with fs.open("trinity-jobs/configs/tok.yaml", "w") as f:
        f.write(yaml.safe_dump(cfg))
    assert train_job.main(["--config", "s3://trinity-jobs/configs/tok.yaml"]) == 0
    s = summary_of(capsys.readouterr().out)
    assert s["stats"] == "s3://trinity-jobs/tokenizers/v1/train_tokenizer.job.json"
    fs.invalidate_cache()
    names = {p.rsplit("/", 1)[1] for p in fs.ls("trinity-jobs/tokenizers/v1")}
    assert {"tokenizer.json", "train_report.json", "train_tokenizer.job.json"} <= names
    with fs.open("trinity-jobs/tokenizers/v1/train_tokenizer.job.json") as f:
        assert json.load(f)["summary"]["vocab_reached"] == VOCAB


@pytest.mark.parametrize("module", ["curate", "rephrase", "score", "train_tokenizer", "tokenize"])
def test_help_exits_0(module):
    res = subprocess.run([sys.executable, "-m", f"jobs.{module}", "--help"], cwd=REPO,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert "--config URI" in res.stdout and "Exit codes" in res.stdout


def test_usage_error_exits_2():
    res = subprocess.run([sys.executable, "-m", "jobs.curate"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "--config" in res.stderr


def test_sigterm_is_recorded_and_exits_143(tmp_path, capsys):
    """Kubernetes stops a pod with SIGTERM: the job unwinds, writes its stats and exits 143."""
    import os
    import signal

    def run(cfg, args):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # never reached: the handler raises at once
        return _entry.Result(summary={})

    before = signal.getsignal(signal.SIGTERM)
    job = _entry.Job(name="probe", description="d", load=lambda raw, uri: raw,
                     output=lambda cfg: cfg["output"], run=run, uses_ray=False)
    cfg = write_yaml(tmp_path / "c.yaml", {"output": str(tmp_path / "out")})
    assert _entry.main(job, ["--config", str(cfg)]) == 143
    s = summary_of(capsys.readouterr().out)
    assert s["status"] == "terminated" and float(s["elapsed_s"]) < 4
    assert json.loads((tmp_path / "out" / "probe.job.json").read_text())["status"] == "terminated"
    assert signal.getsignal(signal.SIGTERM) is before  # the host's handler is back
