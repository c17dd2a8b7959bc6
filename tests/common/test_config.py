"""The ``--set`` rule, YAML config loading and the pydantic-error formatter (common.config).

Run: ``.venv/bin/python -m pytest tests/common -q``
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict

from common.config import (apply_overrides, load_mapping, parse_override, parse_overrides, parse_value,
                           validation_lines, validation_message)
from common.errors import ConfigError, TrinityError


@pytest.mark.parametrize("text, value", [
    ("yes", True), ("true", True), ("no", False), ("8", 8), ("0.5", 0.5), ("null", None), ("", None),
    ("out/x", "out/x"), ("s3://bucket/a=b", "s3://bucket/a=b"), ("[1, 2]", [1, 2]), ('{"a": 1}', {"a": 1}),
    ('"yes"', "yes"), ("'8'", "8"),
])
def test_set_values_are_read_as_yaml(text, value):
    assert parse_value(text) == value
    assert parse_override(f"a.b={text}") == ("a.b", value)


@given(st.integers(), st.booleans(), st.text(st.characters(codec="utf-8"), max_size=20))
def test_a_set_value_means_what_it_means_in_the_config_file(i, b, s):
    # what yaml.safe_dump writes for a value, --set KEY=<that> reads back as the same value
    for v in (i, b, s):
        dumped = yaml.safe_dump(v, default_flow_style=True, width=10**6).removesuffix("\n...\n").strip()
        if "\n" in dumped:  # a multi-line scalar has no one-argument spelling
            continue
        assert parse_override(f"k={dumped}") == ("k", v)


@pytest.mark.parametrize("bad", ["novalue", "=1", ".a=1", "a..b=1", "a=[1, 2"])
def test_malformed_set_names_the_argument(bad):
    with pytest.raises(ConfigError, match=r"--set"):
        parse_override(bad)


def test_overrides_nest_and_a_later_one_wins():
    raw = {"output": {"path": "a"}, "n": 1}
    apply_overrides(raw, ["output.path=b", "ray.num_cpus=2", "n=3", "n=4"])
    assert raw == {"output": {"path": "b"}, "ray": {"num_cpus": 2}, "n": 4}
    assert parse_overrides(["x=1", "x=2"]) == {"x": 2}
    with pytest.raises(ConfigError, match="n is not a mapping"):
        apply_overrides(raw, ["n.deeper=1"])


def test_the_curate_command_and_the_job_entrypoint_read_set_alike(tmp_path: Path):
    from jobs._entry import load_mapping as job_load_mapping
    from pipeline.cli import _load

    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"input: {{paths: [{tmp_path}]}}\noutput: {{path: {tmp_path}/out}}\n")
    sets = ["progress=no", "ray.num_cpus=2", f"output.path={tmp_path}/o2"]
    curate_cfg = _load(cfg, sets)
    job_raw = job_load_mapping(str(cfg), sets)
    assert curate_cfg.progress is False and job_raw["progress"] is False
    assert curate_cfg.ray.num_cpus == job_raw["ray"]["num_cpus"] == 2
    assert curate_cfg.output.path == job_raw["output"]["path"]


def test_load_mapping_reads_any_fsspec_uri_and_names_the_file(tmp_path: Path):
    import fsspec

    with fsspec.open("memory://cfg/a.yaml", "wt") as f:
        f.write("a: {b: 1}\n")
    assert load_mapping("memory://cfg/a.yaml", ["a.c=yes"]) == {"a": {"b": 1, "c": True}}
    (tmp_path / "empty.yaml").write_text("")
    assert load_mapping(str(tmp_path / "empty.yaml")) == {}
    (tmp_path / "list.yaml").write_text("[1, 2]\n")
    (tmp_path / "bad.yaml").write_text("a: [1\n")
    for name, problem in (("missing.yaml", "not found"), ("list.yaml", "expected a mapping"),
                          ("bad.yaml", "not valid YAML")):
        with pytest.raises(ConfigError, match=problem) as e:
            load_mapping(str(tmp_path / name))
        assert name in str(e.value)
    assert issubclass(ConfigError, TrinityError) and issubclass(ConfigError, ValueError)


class _Stage(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    batch_size: int = 1


class _Cfg(BaseModel):
    stages: list[_Stage]
    workers: int = 1


def _error(data) -> Exception:
    try:
        _Cfg.model_validate(data)
    except Exception as e:  # pydantic.ValidationError
        return e
    raise AssertionError("expected a validation error")


def test_the_error_formatter_names_the_field():
    e = _error({"stages": [{"name": "a"}, {"name": "b", "batch_size": "many", "typo": 1}], "workers": "x"})
    lines = validation_lines(e)
    assert lines[0].startswith("stages.1.batch_size: Input should be a valid integer")
    assert "stages.1.typo: Extra inputs are not permitted" in lines
    assert any(line.startswith("workers: ") for line in lines)
    assert validation_message(e) == "; ".join(lines)
    # the first problems, the rest counted, the offending value shown when asked
    short = validation_message(e, limit=1, show_input=True)
    assert short.startswith("stages.1.batch_size: ") and "(got 'many')" in short and short.endswith("') (+2 more)")
    # a file's items read as [i] (manifests), a config's as .i (the --set spelling)
    assert validation_lines(e, brackets=True)[0].startswith("stages[1].batch_size: ")


def test_the_error_formatter_names_the_root_and_strips_pydantics_prefix():
    from pydantic import model_validator

    class Whole(BaseModel):
        a: int = 0

        @model_validator(mode="after")
        def _check(self):
            raise ValueError("the whole thing is wrong")

    try:
        Whole()
    except Exception as e:
        assert validation_message(e, root="<root>") == "<root>: the whole thing is wrong"
        assert validation_message(e) == "the whole thing is wrong"
    assert validation_message(RuntimeError("plain")) == "plain"
