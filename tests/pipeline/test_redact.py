"""Credentials never reach logs, errors or job files: planted secrets, then a grep of every output.

    .venv/bin/python -m pytest tests/pipeline/test_redact.py -q
"""

from __future__ import annotations

import http.server
import json
import logging
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.redact import RedactingFilter, redact_config, redact_text, redact_url, split_userinfo

REPO = Path(__file__).resolve().parents[2]
SECRET = "PLANTEDs3cr3tXYZ"


def test_text_url_and_config_redaction():
    assert redact_text(f"http://bob:{SECRET}@h/v1") == "http://***@h/v1"
    assert redact_text(f"s3://AKIA:{SECRET}@bucket/x and more") == "s3://***@bucket/x and more"
    assert redact_text(f"Authorization: Bearer {SECRET}") == "Authorization: Bearer ***"
    assert redact_text(f"{{'authorization': 'Basic {SECRET}'}}") == "{'authorization': 'Basic ***'}"
    assert redact_text(f"--set input.storage_options.secret={SECRET}") == "--set input.storage_options.secret=***"
    assert redact_text(f"token={SECRET}&password: {SECRET}") == "token=***&password: ***"
    # Ordinary figures and names stay readable.
    for keep in ("num_tokens=12 tokens=7", "monkey=1", "max_doc_tokens: 5", "http://host:8000/v1", "anon=False"):
        assert redact_text(keep) == keep
    assert redact_url(f"https://u:{SECRET}@api/v1?api_key={SECRET}&model=m") == "https://***@api/v1?api_key=***&model=m"
    assert split_userinfo(f"http://bob:{SECRET}@127.0.0.1:9/v1") == ("http://127.0.0.1:9/v1", ("bob", SECRET))
    cfg = {"input": {"paths": [f"s3://k:{SECRET}@b/x"], "storage_options": {"key": SECRET, "secret": SECRET}},
           "engine": {"base_url": f"http://u:{SECRET}@h/v1", "engine_kwargs": {"hf_token": SECRET}},
           "stats": {"num_tokens": 5}}
    out = redact_config(cfg)
    assert SECRET not in json.dumps(out) and out["stats"] == {"num_tokens": 5}


@given(user=st.text(st.characters(min_codepoint=48, max_codepoint=122, exclude_characters="@/:?#[]\\`^"),
                    min_size=1, max_size=12),
       pw=st.text(st.characters(min_codepoint=48, max_codepoint=122, exclude_characters="@/?#[]\\`^"),
                  min_size=6, max_size=30),
       prefix=st.sampled_from(["", "error: ", "POST ", "url="]), scheme=st.sampled_from(["http", "https", "s3", "gs"]))
def test_url_userinfo_is_always_masked(user, pw, prefix, scheme):
    text = f"{prefix}{scheme}://{user}:{pw}@host.example:8000/v1 failed"
    out = redact_text(text)
    assert pw not in out.replace("host.example:8000/v1 failed", "") and "@host.example:8000/v1" in out


def test_logging_filter_masks_messages_and_tracebacks():
    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(self.format(record))

    h = Keep()
    h.addFilter(RedactingFilter())
    lg = logging.getLogger("test.redact")
    lg.addHandler(h)
    lg.propagate = False
    try:
        lg.warning("retrying %s", f"http://u:{SECRET}@h/v1")
        try:
            raise RuntimeError(f"Authorization: Bearer {SECRET}")
        except RuntimeError:
            lg.exception("boom")
    finally:
        lg.removeHandler(h)
    assert len(records) == 2 and all(SECRET not in r for r in records)
    assert "http://***@h/v1" in records[0] and "Bearer ***" in records[1]


class _EchoAuth(http.server.BaseHTTPRequestHandler):
    """An endpoint that fails every request and echoes the Authorization header back (hostile)."""

    seen: list[str] = []

    def do_POST(self):  # noqa: N802 - http.server's name
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        auth = self.headers.get("Authorization", "")
        _EchoAuth.seen.append(auth)
        body = json.dumps({"error": f"bad credentials, Authorization: {auth}"}).encode()
        self.send_response(503)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


def test_openai_engine_keeps_url_and_header_secrets_out_of_errors_and_logs(caplog, monkeypatch):
    from pipeline.rephrase import OpenAIEngineConfig, SamplingConfig, build_engine
    from pipeline.rephrase.errors import EngineDeadError

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _EchoAuth)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    port = srv.server_address[1]
    monkeypatch.setenv("TRINITY_TEST_KEY", "sk-" + SECRET)
    caplog.set_level(logging.DEBUG)  # httpx logs every request URL at INFO
    texts = []
    try:
        cfg = OpenAIEngineConfig(model="m", base_url=f"http://bob:{SECRET}@127.0.0.1:{port}/v1",
                                 api_key_env="TRINITY_TEST_KEY", max_retries=2, backoff_s=0.01, max_concurrency=1,
                                 request_timeout_s=10)
        eng = build_engine(cfg)
        try:
            gens = eng.generate(["a"], SamplingConfig())
            texts += [g.extra.get("error", "") for g in gens]
        finally:
            eng.close()
    finally:
        srv.shutdown()
        srv.server_close()
    import base64

    # The URL's credentials were still sent (as basic auth, which httpx lets win over the header).
    assert _EchoAuth.seen and all(base64.b64decode(a.split()[1]).decode() == f"bob:{SECRET}" for a in _EchoAuth.seen)
    assert "503" in texts[0]
    # Nothing listens on the port now: a dead endpoint's error names it without the userinfo.
    dead = build_engine(OpenAIEngineConfig(model="m", base_url=f"http://bob:{SECRET}@127.0.0.1:{port}/v1",
                                           api_key_env=None, max_retries=1, backoff_s=0.01, request_timeout_s=5))
    with pytest.raises(EngineDeadError) as exc:
        dead.generate(["a"], SamplingConfig())
    dead.close()
    texts.append(str(exc.value))
    assert f"127.0.0.1:{port}" in texts[-1]
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert logged and SECRET not in logged
    assert all(SECRET not in t and "Basic ***" in t or "unreachable" in t for t in texts), texts
    assert all(SECRET not in t and base64.b64encode(f"bob:{SECRET}".encode()).decode() not in t for t in texts)


_JOB_SCRIPT = textwrap.dedent('''
    import logging, sys
    from jobs._entry import Job, Result, main

    def load(raw, uri):
        return raw

    def run(cfg, args):
        logging.getLogger("jobs.test").warning("connecting to %s with %s", cfg["endpoint"], cfg["storage_options"])
        raise RuntimeError("cannot reach " + cfg["endpoint"] + " (Authorization: Bearer " + cfg["token"] + ")")

    job = Job(name="secrets", description="planted secrets", load=load, output=lambda cfg: cfg["output"],
              run=run, uses_ray=False)
    sys.exit(main(job))
''')


def test_job_file_summary_and_log_hold_no_planted_secret(tmp_path):
    """A failing job with a secret in the config file, a --set override and the error: grep finds none."""
    import yaml

    out = tmp_path / "out"
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({
        "output": str(out), "endpoint": f"http://svc:{SECRET}@127.0.0.1:1/v1",
        "storage_options": {"key": "AKIA" + SECRET, "secret": SECRET, "anon": False}, "token": SECRET}))
    script = tmp_path / "job.py"
    script.write_text(_JOB_SCRIPT)
    proc = subprocess.run([sys.executable, str(script), "--config", str(cfg), "--set",
                           f"storage_options.password={SECRET}"], capture_output=True, text=True, cwd=REPO,
                          timeout=120)
    assert proc.returncode == 1, proc.stderr[-2000:]
    stats = out / "secrets.job.json"
    assert stats.is_file()
    doc = json.loads(stats.read_text())
    assert doc["status"] == "failed" and "cannot reach http://***@127.0.0.1:1/v1" in doc["error"]
    assert "connecting to http://***@127.0.0.1:1/v1" in proc.stderr  # the log line is there, masked
    for name, text in (("job file", stats.read_text()), ("stdout", proc.stdout), ("stderr", proc.stderr)):
        assert SECRET not in text, f"{name} leaks the planted secret:\n{text[-2000:]}"
