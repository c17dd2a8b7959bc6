"""Mixture files: validation, planning from manifests, full-scale dry runs."""

import json
import subprocess
import sys

import pytest
import yaml

from rsdb.errors import ConfigError
from rsdb.mixture import load_mixture, parse_tokens, plan_mixture


def _manifest(dir_, tokens, source):
    dir_.mkdir(parents=True, exist_ok=True)
    (dir_ / "manifest.json").write_text(
        json.dumps({"format": "rsdb-tokens", "format_version": 1, "source": source, "num_docs": 1,
                    "num_tokens": tokens, "shards": []})
    )
    return dir_


def _write(tmp_path, doc):
    path = tmp_path / "mixture.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


TRINITY = {
    "name": "trinity-large",
    "sources": {"web": {"path": "web"}, "code": {"path": "code"}, "math": {"path": "math"}},
    "phases": [
        {"name": "p1", "tokens": "10T", "weights": {"web": 0.75, "code": 0.15, "math": 0.10}},
        {"name": "p2", "tokens": "4T", "weights": {"web": 0.55, "code": 0.25, "math": 0.20}},
        {"name": "p3", "tokens": "3T", "weights": {"web": 0.40, "code": 0.30, "math": 0.30}},
    ],
}


@pytest.mark.parametrize(
    "text,expected",
    [("10T", 10**13), ("4t", 4 * 10**12), ("2.5B", 2_500_000_000), ("1_000", 1000), (4096, 4096), ("3e12", 3 * 10**12)],
)
def test_parse_tokens(text, expected):
    assert parse_tokens(text) == expected


@pytest.mark.parametrize("bad", ["ten", "-5", 0, "1X"])
def test_parse_tokens_rejects(bad):
    with pytest.raises(ValueError):
        parse_tokens(bad)


def test_full_scale_plan_reads_only_manifests(tmp_path):
    # Manifests that declare trillions of tokens and no shard at all: planning never opens data.
    _manifest(tmp_path / "web", 12 * 10**12, "web")
    _manifest(tmp_path / "code", 2 * 10**12, "code")
    _manifest(tmp_path / "math", 10**12, "math")
    plan = plan_mixture(load_mixture(_write(tmp_path, TRINITY)))
    assert plan.ok, plan.problems
    assert plan.mixture.total_tokens == 17 * 10**12
    by = {(r.phase, r.source): r for r in plan.rows}
    assert by[("p1", "web")].target_tokens == 7_500_000_000_000
    # Phase targets add up to the budget exactly.
    for phase in plan.mixture.phases:
        assert sum(r.target_tokens for r in plan.rows if r.phase == phase.name) == phase.tokens
    # math: 1T + 0.8T + 0.9T = 2.7T of 1T available -> 2.7 cumulative epochs.
    assert by[("p3", "math")].cumulative_epochs == pytest.approx(2.7)
    assert plan.mixture.phase_boundaries() == [10**13, 14 * 10**12, 17 * 10**12]


def test_plan_with_too_few_tokens_is_refused(tmp_path):
    _manifest(tmp_path / "web", 10**12, "web")
    _manifest(tmp_path / "code", 10**11, "code")
    _manifest(tmp_path / "math", 10**12, "math")
    plan = plan_mixture(load_mixture(_write(tmp_path, TRINITY)))
    assert not plan.ok
    assert any("'code'" in p and "max_epochs" in p for p in plan.problems)
    out = subprocess.run([sys.executable, "-m", "jobs.cli", "mix", "plan", str(tmp_path / "mixture.yaml")],
                         capture_output=True, text=True)
    assert out.returncode == 1
    assert "plan refused" in out.stdout


def test_heavy_upsampling_is_flagged_not_refused(tmp_path):
    doc = {"sources": {"a": {"path": "a", "tokens": "1M"}},
           "phases": [{"tokens": "5M", "weights": {"a": 1}}], "warn_epochs": 4, "max_epochs": 10}
    plan = plan_mixture(load_mixture(_write(tmp_path, doc)))
    assert plan.ok and plan.rows[0].flag == "UPSAMPLED" and plan.warnings


@pytest.mark.parametrize(
    "doc,needle",
    [
        ({"sources": {"a": {"path": "a"}}, "phases": [{"tokens": "1M", "weights": {"b": 1}}]}, "unknown source"),
        ({"sources": {"a": {"path": "a"}}, "phases": [{"tokens": "1M", "weights": {"a": -1}}]}, "negative"),
        ({"sources": {"a": {"path": "a"}}, "phases": [{"tokens": "lots", "weights": {"a": 1}}]}, "phases.0.tokens"),
        ({"sources": {"a": {"path": "a"}}, "phases": []}, "at least one phase"),
        ({"sources": {"a": {"path": "a", "typo": 1}}, "phases": [{"tokens": 1, "weights": {"a": 1}}]}, "sources.a.typo"),
    ],
)
def test_invalid_mixture_names_the_key(tmp_path, doc, needle):
    with pytest.raises(ConfigError, match=needle):
        load_mixture(_write(tmp_path, doc))


def test_missing_manifest_is_a_clear_error(tmp_path):
    doc = {"sources": {"a": {"path": "nowhere"}}, "phases": [{"tokens": 10, "weights": {"a": 1}}]}
    with pytest.raises(ConfigError, match="no manifest.json"):
        plan_mixture(load_mixture(_write(tmp_path, doc)))
