"""The one Ray connect rule (common.cluster).

Run: ``.venv/bin/python -m pytest tests/common -q``
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from common.cluster import resolve_address

REPO = Path(__file__).resolve().parents[2]


def test_an_explicit_address_wins_then_ray_address(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert resolve_address(None) is None
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
    assert resolve_address(None) == "10.0.0.1:6379"
    assert resolve_address("ray://head:10001") == "ray://head:10001"


def test_connect_starts_a_local_cluster_once_and_leaves_a_connected_process_alone():
    """In a fresh interpreter: shutting Ray down here would stop the session's cluster for later tests."""
    pytest.importorskip("ray")
    child = textwrap.dedent("""
        import ray
        from common.cluster import connect_ray
        try:
            assert connect_ray(num_cpus=1) is True  # this call started it: the caller shuts it down
            assert ray.cluster_resources().get("CPU") == 1
            assert connect_ray(num_cpus=4) is False  # already connected: nothing changes
            assert ray.cluster_resources().get("CPU") == 1
        finally:
            ray.shutdown()
        print("ok")
    """)
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    done = subprocess.run([sys.executable, "-c", child], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=180, check=False)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-2000:]
