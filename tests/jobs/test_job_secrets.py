"""A curate run with planted credentials: no output file, summary or log line holds them.

    .venv/bin/python -m pytest tests/jobs/test_job_secrets.py -q
"""

from __future__ import annotations

import logging
from pathlib import Path

import yaml

SECRET = "PLANTEDcurateS3cr3t"


def test_curate_job_files_hold_no_planted_secret(ray_cluster, tiny_docs, tmp_path, capsys, caplog):
    from jobs import curate

    out = tmp_path / "curated"
    options = {"key": "AKIA" + SECRET, "secret": SECRET, "token": SECRET}  # fsspec's local filesystem ignores them
    cfg = tmp_path / "curate.yaml"
    cfg.write_text(yaml.safe_dump({
        "input": {"paths": [str(tiny_docs)], "unit_rows": 50, "storage_options": options},
        "output": {"path": str(out), "shard_bytes": "100KB", "storage_options": dict(options)},
        "stages": ["normalize", "exact_dedup"],
        "progress": False,
    }))
    with caplog.at_level(logging.INFO):
        rc = curate.main(["--config", str(cfg), "--set", f"input.storage_options.password={SECRET}"])
    captured = capsys.readouterr()
    assert rc == 0, captured.out[-2000:]
    files = [p for d in (Path(out), Path(f"{out}.curation")) for p in d.rglob("*") if p.is_file()]
    assert any(p.name == "curate.job.json" for p in files) and any(p.name == "manifest.json" for p in files)
    for p in files:
        assert SECRET.encode() not in p.read_bytes(), f"{p} holds the planted secret"
    job = Path(f"{out}.curation", "curate.job.json").read_text()
    assert '"secret": "***"' in job and "password=***" in job  # redacted, not dropped
    for name, text in (("stdout", captured.out), ("stderr", captured.err),
                       ("log", "\n".join(r.getMessage() for r in caplog.records))):
        assert SECRET not in text, f"{name} holds the planted secret"
