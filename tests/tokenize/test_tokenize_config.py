"""One config model behind both entry points of the tokenize job.

``trinity-data tokenize`` derives its flags from :class:`TokenizeConfig` and
``python -m jobs.tokenize`` validates its YAML through it: the same knobs, the same
defaults, the same checks, whichever way a run is started.

Run: ``.venv/bin/python -m pytest tests/tokenize/test_tokenize_config.py -q``
"""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import typer
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import rsdb
import tokenizer
from common.errors import ConfigError
from jobs.cli import app
from tokenizer.tokenize_job import TokenizeConfig, load_config
from tokenizer.tokenize_cli import config_from_flags, flag_of

runner = CliRunner()

#: The flags users have (README, docs, the demo): they must keep working.
KNOWN_FLAGS = {"--tokenizer", "--input", "--out", "--source", "--source-field", "--text-field", "--bos", "--no-bos",
               "--eos", "--no-eos", "--shard-tokens", "--format", "--unit-rows", "--fast", "--no-fast",
               "--overwrite", "--workers", "--address"}


def _command():
    return typer.main.get_command(app).commands["tokenize"]


def _flags() -> set[str]:
    return {opt for p in _command().params for opt in (*p.opts, *p.secondary_opts)}


def _parse(argv: list[str]) -> TokenizeConfig:
    """What the command would run with ``argv`` (click parses, the model validates)."""
    params = _command().make_context("tokenize", argv).params
    params.pop("address")
    return config_from_flags(params)


def test_every_field_is_a_flag_and_no_flag_is_extra():
    fields = TokenizeConfig.model_fields
    flags = _flags()
    assert KNOWN_FLAGS <= flags
    assert {flag_of(name) for name in fields} <= flags
    bools = [n for n, f in fields.items() if f.annotation is bool]
    assert flags == {flag_of(n) for n in fields} | {f"--no-{flag_of(n)[2:]}" for n in bools} | {"--address"}
    # each option's parameter is the field of the same name, so the values arrive unrenamed
    assert {p.name for p in _command().params} == set(fields) | {"address"}


def _argv(values: dict) -> list[str]:
    argv: list[str] = []
    for name, value in values.items():
        if isinstance(value, bool):
            argv.append(flag_of(name) if value else f"--no-{flag_of(name)[2:]}")
        elif isinstance(value, list):
            for item in value:
                argv += [flag_of(name), item]
        elif value is not None:
            argv += [flag_of(name), str(value)]
    return argv


names = st.text(st.characters(whitelist_categories=("Ll", "Nd")), min_size=1, max_size=8)
knobs = st.fixed_dictionaries(
    {"tokenizer": names, "inputs": st.lists(names, min_size=1, max_size=3), "output": names},
    optional={"source": names, "text_field": names, "id_field": names, "lang_field": names, "bos": st.booleans(),
              "eos": st.booleans(), "batch_size": st.integers(1, 4096), "shard_tokens": st.integers(1, 1 << 30),
              "max_doc_tokens": st.integers(1, 10**6), "fast": st.booleans(),
              "format": st.sampled_from(["rsdb", "megatron"]), "unit_rows": st.integers(1, 10**6),
              "workers": st.integers(1, 64), "overwrite": st.booleans()})


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(knobs)
def test_the_cli_and_the_job_config_build_the_same_run(values):
    via_yaml = load_config(yaml.safe_load(yaml.safe_dump(values)), "t.yaml")
    assert _parse(_argv(values)) == via_yaml
    for name, value in values.items():
        assert getattr(via_yaml, name) == value
    assert via_yaml.source_field == (None if "source" in values else "source")


def test_errors_name_the_flag_on_the_cli_and_the_key_in_a_config():
    with pytest.raises(ConfigError, match=r"^--format: Input should be 'rsdb' or 'megatron'; --unit-rows: Input should be greater than 0$"):
        _parse(["--tokenizer", "t", "--input", "a", "--out", "o", "--unit-rows", "0", "--format", "parquet"])
    with pytest.raises(ConfigError, match=r"^k\.yaml: unit_rows: Input should be greater than 0"):
        load_config({"tokenizer": "t", "inputs": ["a"], "output": "o", "unit_rows": 0}, "k.yaml")
    with pytest.raises(ConfigError, match=r"^--max-doc-tokens: Input should be greater than 0"):
        _parse(["--tokenizer", "t", "--input", "a", "--out", "o", "--max-doc-tokens", "-3"])
    with pytest.raises(ConfigError, match=r"k\.yaml: expected a mapping"):
        load_config(["not", "a", "mapping"], "k.yaml")


def test_the_command_exits_2_on_a_bad_value_before_ray_starts(tmp_path):
    res = runner.invoke(app, ["tokenize", "--tokenizer", str(tmp_path), "--input", "a", "--out", str(tmp_path / "o"),
                              "--batch-size", "0"], env={"COLUMNS": "200", "RAY_ADDRESS": "127.0.0.1:1"})
    assert res.exit_code == 2 and "--batch-size: Input should be greater than 0" in " ".join(res.output.split())


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("tok")
    cfg = tokenizer.TrainConfig(inputs=["-"], vocab_size=2600, min_frequency=1)
    tokenizer.train(cfg, texts=["alpha beta gamma delta 1234 東京 print(i)"] * 40, out_dir=out)
    return out


def test_knobs_only_the_job_config_had_reach_the_run_from_the_cli(ray_cluster, tok_dir, tmp_path):
    """--id-field, --lang-field, --max-doc-tokens and --batch-size were job-config only; --no-eos a CLI-only one."""
    rows = [{"doc": f"d{i}", "language": "xx", "body": "alpha beta " * (1 + 20 * (i == 3)), "src": "web"}
            for i in range(6)]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "in.parquet")
    out = tmp_path / "tokens"
    res = runner.invoke(app, ["tokenize", "--tokenizer", str(tok_dir), "--input", str(tmp_path / "in.parquet"),
                              "--out", str(out), "--source-field", "src", "--text-field", "body", "--id-field", "doc",
                              "--lang-field", "language", "--max-doc-tokens", "12", "--batch-size", "2", "--no-eos",
                              "--workers", "1"])
    assert res.exit_code == 0, res.output
    tok = tokenizer.load(tok_dir)
    shards = rsdb.open_shards(out / "web")
    assert shards.num_docs == 5
    assert all(shards[i].tolist()[-1] != tokenizer.eos_id(tok) for i in range(5))
    assert list(shards.view(0).doc_ids()) == ["d0", "d1", "d2", "d4", "d5"]
    rejected = pq.read_table(out / "rejected").to_pylist()
    assert [(r["id"], r["reject_reason"].split(":")[0]) for r in rejected] == [("d3", "too_long")]
    assert json.loads((out / "summary.json").read_text())["tokens_per_lang"].keys() == {"xx"}
