"""Fixtures for the tokenizer tests: one small tokenizer trained on a real slice.

Run: .venv/bin/python -m pytest tests/tokenizer -q
"""

from __future__ import annotations

import pytest

from tokenizer_cases import SMALL_VOCAB


@pytest.fixture(scope="session")
def small_tok_dir(tmp_path_factory, demo_corpus):
    """A tokenizer trained on ~1 MB of the demo corpus (held-out 5% excluded)."""
    import tokenizer

    out = tmp_path_factory.mktemp("tok")
    cfg = tokenizer.TrainConfig(
        inputs=[str(demo_corpus)], vocab_size=SMALL_VOCAB, max_bytes=1_000_000, holdout_fraction=0.05
    )
    tokenizer.train(cfg, out_dir=out)
    return out


@pytest.fixture(scope="session")
def small_tok(small_tok_dir):
    import tokenizer

    return tokenizer.load(small_tok_dir)
