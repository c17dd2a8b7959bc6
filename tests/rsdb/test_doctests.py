"""The ``>>>`` examples in rsdb's public modules run and hold."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["rsdb", "rsdb.shards", "rsdb.loader", "rsdb.torch"]


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name):
    if name == "rsdb.torch":
        pytest.importorskip("torch", reason="torch is an optional extra")
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0
