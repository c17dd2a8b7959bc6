"""Fixtures shared by the whole suite: the repo root, the shared corpus, one local Ray cluster,
moto's S3 server on loopback."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("TRINITY_SHARED", REPO.parent / "shared"))
DEMO_CORPUS = SHARED / "corpus" / "demo.jsonl.zst"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def demo_corpus() -> Path:
    if not DEMO_CORPUS.exists():
        pytest.skip(f"shared demo corpus not found at {DEMO_CORPUS} (set TRINITY_SHARED)")
    return DEMO_CORPUS


@pytest.fixture
def s3_env(monkeypatch):
    """moto's S3 server on 127.0.0.1 (random port), reached through the standard AWS variables.

    Yields a function creating a bucket; every s3:// URI in the test (s3fs, boto3, the jobs)
    then talks to this server. Stopped when the test ends.
    """
    pytest.importorskip("s3fs")
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                 "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": f"http://{host}:{port}"}.items():
        monkeypatch.setenv(k, v)
    try:
        yield lambda bucket: boto3.client("s3").create_bucket(Bucket=bucket)
    finally:
        server.stop()


@pytest.fixture(scope="session")
def ray_cluster():
    """One real local Ray cluster for the whole session (2 CPUs, no dashboard)."""
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray


def pytest_sessionfinish(session, exitstatus):
    try:
        import ray
    except ImportError:
        return
    if ray.is_initialized():
        ray.shutdown()
