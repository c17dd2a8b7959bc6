"""The tokenize job: row-range units, ``--format megatron``, and config checks before Ray starts.

Run: ``.venv/bin/python -m pytest tests/tokenize/test_tokenize_units.py -q``
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import rsdb
import tokenizer
from rsdb.errors import ConfigError
from tokenizer.tokenize_job import (
    TokenizeConfig,
    _read_table,
    load_config,
    plan_units,
    tokenize_to_shards,
)

WORDS = ["alpha", "beta", "gamma", "delta", "epsilon", "über", "東京", "x = 1", "print(i)"]


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("tok")
    cfg = tokenizer.TrainConfig(inputs=["-"], vocab_size=2600, min_frequency=1)
    tokenizer.train(cfg, texts=[" ".join(WORDS)] * 30, out_dir=out)
    return out


def _rows(n, seed):
    rng = np.random.default_rng(seed)
    return [{"id": f"d{seed}-{i}", "text": " ".join(rng.choice(WORDS, size=int(rng.integers(1, 30)))),
             "lang": "en", "source": "web" if i % 3 else "code"} for i in range(n)]


@pytest.fixture()
def two_files(tmp_path):
    d = tmp_path / "curated"
    d.mkdir()
    rows = [_rows(53, 0), _rows(41, 1)]
    rows[1][7]["text"] = ""  # one rejected row, reported with its row number in the file
    for k, r in enumerate(rows):
        pq.write_table(pa.Table.from_pylist(r), d / f"part-{k}.parquet", row_group_size=10)
    return d, rows


def _docs(out, src):
    shards = rsdb.open_shards(out / src)
    return [shards[i].tolist() for i in range(shards.num_docs)]


def test_plan_splits_large_files_into_row_ranges(two_files):
    d, _ = two_files
    files = [str(d / "part-0.parquet"), str(d / "part-1.parquet")]
    units = plan_units(files, 20)
    assert [(u["start"], u["stop"]) for u in units] == [(0, 20), (20, 40), (40, 53), (0, 20), (20, 40), (40, 41)]
    assert [u["unit"] for u in units] == sorted(u["unit"] for u in units), "names sort in file and row order"
    assert len({u["unit"] for u in units}) == 6
    assert [u["unit"] for u in plan_units(files, 100)] == ["u00000-part-0", "u00001-part-1"]
    whole = pq.read_table(files[0])
    for u in units[:3]:  # a range reads only its row groups, then slices: the same rows
        assert _read_table(u["path"], u["start"], u["stop"]).equals(whole.slice(u["start"], u["stop"] - u["start"]))


def test_row_range_units_give_the_same_shards_as_whole_files(ray_cluster, tok_dir, two_files, tmp_path):
    d, rows = two_files
    whole = tokenize_to_shards(TokenizeConfig(tokenizer=str(tok_dir), inputs=[str(d)], output=str(tmp_path / "a")))
    split_cfg = TokenizeConfig(tokenizer=str(tok_dir), inputs=[str(d)], output=str(tmp_path / "b"), unit_rows=15)
    split = tokenize_to_shards(split_cfg.model_copy(update={"workers": 2}))
    assert (whole.units_total, split.units_total) == (2, 4 + 3)
    assert whole.tokens_per_source == split.tokens_per_source and split.rejected == 1
    for src in ("web", "code"):
        assert _docs(tmp_path / "a", src) == _docs(tmp_path / "b", src)
    rej = pq.read_table(tmp_path / "b" / "rejected").to_pylist()
    assert [(r["file"].rsplit("/", 1)[-1], r["row"], r["id"]) for r in rej] == [("part-1.parquet", 7, "d1-7")]
    # resume: drop one range's marker, rerun, same manifest
    before = (tmp_path / "b" / "web" / "manifest.json").read_text()
    marker = sorted((tmp_path / "b" / "_units").glob("u00000-part-0-r*.json"))[1]
    marker.unlink()
    again = tokenize_to_shards(split_cfg)  # workers is not a setting of the output: it resumes
    assert again.units_skipped == 6 and (tmp_path / "b" / "web" / "manifest.json").read_text() == before


def test_megatron_format_holds_the_same_documents(ray_cluster, tok_dir, two_files, tmp_path):
    d, _ = two_files
    tokenize_to_shards(TokenizeConfig(tokenizer=str(tok_dir), inputs=[str(d)], output=str(tmp_path / "rsdb")))
    cfg = TokenizeConfig(tokenizer=str(tok_dir), inputs=[str(d)], output=str(tmp_path / "meg"), format="megatron",
                         unit_rows=20)
    summary = tokenize_to_shards(cfg)
    for src in ("web", "code"):
        folder = tmp_path / "meg" / src
        m = rsdb.open_megatron(folder / "text_document")
        assert m.tokens.dtype == np.uint16  # a 2,600-id vocabulary fits
        got = [m.tokens[m.offsets[i]: m.offsets[i + 1]].tolist() for i in range(m.num_docs)]
        assert got == _docs(tmp_path / "rsdb", src)
        meta = json.loads((folder / "megatron.json").read_text())
        assert meta["num_tokens"] == summary.tokens_per_source[src] == m.num_tokens
        assert not (folder / "parts").exists(), "unit parts are merged, then removed"
    # the loader reads the prefix like any source
    loader = rsdb.RSDBLoader({"web": str(tmp_path / "meg" / "web" / "text_document")}, seq_len=16, batch_size=2,
                             epochs=1)
    assert sum(int(b["loss_mask"].sum()) for b in loader) == summary.tokens_per_source["web"]
    # a rerun with every unit done keeps the merged dataset
    again = tokenize_to_shards(cfg)
    assert again.units_skipped == again.units_total and again.tokens_per_source == summary.tokens_per_source


def test_bad_format_and_missing_tokenizer_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="format: Input should be 'rsdb' or 'megatron'"):
        load_config({"tokenizer": "x", "inputs": ["a"], "output": str(tmp_path), "format": "parquet"})
    from tokenizer.tokenize_job import check_tokenizer_dir

    with pytest.raises(ConfigError, match="no such folder"):
        check_tokenizer_dir(str(tmp_path / "nope"))
    with pytest.raises(ConfigError, match="no tokenizer.json"):
        check_tokenizer_dir(str(tmp_path))


def test_cli_checks_the_tokenizer_before_starting_ray(tmp_path, monkeypatch):
    import ray
    from typer.testing import CliRunner

    from jobs.cli import app

    def no_ray(*a, **k):
        raise AssertionError("ray.init called before the tokenizer was checked")

    monkeypatch.setattr(ray, "init", no_ray)
    res = CliRunner().invoke(app, ["tokenize", "--tokenizer", str(tmp_path / "missing"), "--input", str(tmp_path),
                                   "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "no such folder" in " ".join(res.output.split())


def test_tokenize_job_stops_on_a_missing_tokenizer_before_ray(tmp_path, monkeypatch):
    import ray

    from jobs.tokenize import main

    cfg = tmp_path / "t.yaml"
    cfg.write_text(f"tokenizer: {tmp_path / 'missing'}\ninputs: [{tmp_path}]\noutput: {tmp_path / 'o'}\n"
                   "format: megatron\nunit_rows: 100\n")
    assert main(["--config", str(cfg), "--check"]) == 0  # --check validates the config alone (no data needed)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda *a, **k: (_ for _ in ()).throw(AssertionError("ray.init called")))
    assert main(["--config", str(cfg)]) == 2
    stats = json.loads((tmp_path / "o" / "tokenize.job.json").read_text())
    assert stats["status"] == "config_error" and "no such folder" in stats["error"]
