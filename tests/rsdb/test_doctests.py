"""The ``>>>`` examples in rsdb's public modules run and hold."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["rsdb", "rsdb.shards", "rsdb.loader", "rsdb.torch", "rsdb.schedule", "rsdb.naming"]


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name):
    if name == "rsdb.torch":
        pytest.importorskip("torch", reason="torch is an optional extra")
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0


def test_core_stub_is_current(tmp_path):
    """rsdb/_core.pyi is nanobind's stubgen output for the built core (regenerate on change)."""
    import subprocess
    import sys
    from pathlib import Path

    pytest.importorskip("nanobind.stubgen", reason="nanobind's stubgen ships with nanobind >= 2")
    out = tmp_path / "_core.pyi"
    subprocess.run([sys.executable, "-m", "nanobind.stubgen", "-q", "-m", "rsdb._core", "-o", str(out)], check=True)
    checked_in = Path(__file__).resolve().parents[2] / "rsdb" / "_core.pyi"
    assert out.read_text() == checked_in.read_text(), (
        "rsdb/_core.pyi is stale: python -m nanobind.stubgen -m rsdb._core -o rsdb/_core.pyi")
