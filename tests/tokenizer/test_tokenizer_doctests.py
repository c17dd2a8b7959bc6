"""The `>>>` examples in the tokenizer modules run and hold."""

from __future__ import annotations

import doctest
import importlib

import pytest


@pytest.mark.parametrize("name", ["pretokenize", "counts", "train", "evaluate", "config", "sharded", "memory"])
def test_doctests(name):
    # import_module: `tokenizer.train` the attribute is the function, not the module.
    module = importlib.import_module(f"tokenizer.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
