"""The one Ray connect rule (common.cluster).

Run: ``.venv/bin/python -m pytest tests/common -q``
"""

from __future__ import annotations

import pytest

from common.cluster import connect_ray, resolve_address


def test_an_explicit_address_wins_then_ray_address(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert resolve_address(None) is None
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
    assert resolve_address(None) == "10.0.0.1:6379"
    assert resolve_address("ray://head:10001") == "ray://head:10001"


def test_connect_starts_a_local_cluster_once_and_leaves_a_connected_process_alone(monkeypatch):
    ray = pytest.importorskip("ray")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    if ray.is_initialized():
        ray.shutdown()
    try:
        assert connect_ray(num_cpus=1) is True  # this call started it: the caller shuts it down
        assert ray.cluster_resources().get("CPU") == 1
        assert connect_ray(num_cpus=4) is False  # already connected: nothing changes
        assert ray.cluster_resources().get("CPU") == 1
    finally:
        ray.shutdown()
