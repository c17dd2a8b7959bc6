"""Mixture conventions: weights that do not sum to 1 are flagged unless ``normalize: true``.

Run: ``.venv/bin/python -m pytest tests/mixture/test_mixture_conventions.py -q``
"""

from __future__ import annotations

import json
import logging

import pytest
import yaml

from rsdb.mixture import Mixture, load_mixture, plan_mixture


def _manifest(dir_, tokens, source):
    dir_.mkdir(parents=True, exist_ok=True)
    (dir_ / "manifest.json").write_text(json.dumps({"format": "rsdb-tokens", "format_version": 1, "source": source,
                                                    "num_docs": 1, "num_tokens": tokens, "shards": []}))
    return dir_


def _mixture(weights, **extra):
    return Mixture.model_validate({"sources": {"web": {"path": "w", "tokens": "1B"}, "code": {"path": "c", "tokens": "1B"}},
                                   "phases": [{"name": "p1", "tokens": "100M", "weights": weights}], **extra})


def test_weights_not_summing_to_one_are_flagged_with_the_real_shares():
    plan = plan_mixture(_mixture({"web": 0.45, "code": 0.40}))
    assert plan.ok  # a warning, not a refusal
    (w,) = [w for w in plan.warnings if "sum to" in w]
    assert "p1: weights sum to 0.85" in w and "web 0.45 -> 52.9%" in w and "normalize: true" in w


@pytest.mark.parametrize("weights, extra", [({"web": 0.6, "code": 0.4}, {}), ({"web": 3, "code": 1},
                                                                            {"normalize": True})])
def test_weights_summing_to_one_or_normalize_true_are_quiet(weights, extra):
    assert not [w for w in plan_mixture(_mixture(weights, **extra)).warnings if "sum to" in w]


def test_loader_from_mixture_logs_the_warning(tmp_path, caplog):
    import rsdb

    rsdb.write_shards(tmp_path / "web", [[1, 2, 3]] * 4, source="web")
    rsdb.write_shards(tmp_path / "code", [[4, 5]] * 4, source="code")
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump({"sources": {"web": {"path": "web"}, "code": {"path": "code"}},
                                    "phases": [{"tokens": 40, "weights": {"web": 0.5, "code": 0.3}}]}))
    with caplog.at_level(logging.WARNING, logger="rsdb.mixture"):
        rsdb.RSDBLoader.from_mixture(load_mixture(path), seq_len=4, batch_size=1, buffer_docs=2)
    assert any("weights sum to 0.8" in r.getMessage() for r in caplog.records)


def test_demo_mixture_weights_sum_to_one_after_dropping_a_sliver(tmp_path):
    from jobs.demo import write_mixture

    tokens = tmp_path / "tokens"
    for name, n in {"web-docs": 50_000, "docs-rst": 20_000, "code-python": 15_000, "code-go": 300,
                    "fiction-ish": 12_000}.items():
        _manifest(tokens / name, n, name)
    path = write_mixture(tokens, tmp_path / "mixture.yaml")
    m = load_mixture(path)
    assert "code-go" not in m.sources
    for phase in m.phases:
        assert abs(sum(phase.weights.values()) - 1.0) < 1e-6, phase.weights
    assert not [w for w in plan_mixture(m).warnings if "sum to" in w]


def test_endless_mode_without_phases_mixes_in_proportion_to_tokens(tmp_path):
    """Natural mixing: no source runs ahead in epochs, however small it is or short its documents."""
    import numpy as np

    import rsdb

    rng = np.random.default_rng(0)
    sizes = {"web": rng.integers(100, 900, 120).tolist(), "code": rng.integers(300, 2000, 40).tolist(),
             "tiny": [30]}  # one short document: 0.03% of the tokens
    paths = {}
    for name, lengths in sizes.items():
        rsdb.write_shards(tmp_path / name, [rng.integers(0, 1000, n) for n in lengths], source=name, vocab_size=1000)
        paths[name] = str(tmp_path / name)
    loader = rsdb.RSDBLoader(paths, seq_len=127, batch_size=8, buffer_docs=16, fields=("tokens",))
    for _, _batch in zip(range(600), loader):  # ~5.6 epochs of the corpus
        pass
    stats = loader.stats()
    emitted = stats["tokens_per_phase"]["all"]
    total_emitted, total = sum(emitted.values()), sum(loader.tokens_per_source)
    for name, tokens in zip(loader.source_names, loader.tokens_per_source):
        assert abs(emitted.get(name, 0) / total_emitted - tokens / total) < 0.02, (name, emitted)
    epochs = stats["epochs"]
    assert max(epochs.values()) - min(epochs.values()) <= 1.0, epochs  # before: tiny 282 epochs, others 5.6
