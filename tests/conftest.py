"""Fixtures shared by the whole suite: the repo root, the shared corpus, one local Ray cluster."""

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
