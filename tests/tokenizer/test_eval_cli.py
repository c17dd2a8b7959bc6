"""Evaluation metrics and the `trinity-data tokenizer` commands."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from jobs.cli import app
from tokenizer.corpus import Doc
from tokenizer.evaluate import HFCandidate, OpenAICandidate, aligned_digit_groups, evaluate, script_group

runner = CliRunner()


@pytest.mark.parametrize(
    "data,lengths,expected",
    [
        (b"1234567", [1, 3, 3], (3, 3)),
        (b"1234567", [3, 3, 1], (0, 3)),  # left-aligned, as o200k
        (b"x 1234!", [1, 2, 3, 1], (2, 2)),  # leading space on the first group is fine
        (b"x 1234!", [1, 1, 1, 3, 1], (2, 2)),
        (b"a123", [4], (0, 1)),  # glued to a letter
        (b"123%", [4], (0, 1)),  # glued to punctuation
        (b"12 345", [2, 4], (2, 2)),
        (b"no digits", [9], (0, 0)),
    ],
)
def test_aligned_digit_groups(data, lengths, expected):
    assert aligned_digit_groups(data, lengths) == expected


def test_script_groups():
    assert script_group("zh-Hans") == "cjk" and script_group("zxx") == "code" and script_group("xx") == "other"


def test_evaluate_side_by_side(small_tok_dir):
    docs = [
        Doc("The price is 1234567 dollars, 2026-11-23.", "en", "web"),
        Doc("東京2024年の人口は14,000,000人です。", "ja", "web"),
        Doc("def f(x):\n    return x * 1000\n", "zxx", "code"),
    ]
    cands = [HFCandidate(str(small_tok_dir), "ours"), OpenAICandidate("o200k_base")]
    res = evaluate(cands, docs)
    ov = res["overall"]
    assert res["tokenizers"] == ["ours", "o200k_base"]
    assert ov["digit_aligned"]["ours"] == 1.0
    assert ov["digit_aligned"]["o200k_base"] < 1.0
    assert ov["bytes"] == sum(len(d.text.encode()) for d in docs)
    assert set(res["groups"]["script"]) == {"latin", "cjk", "code"}
    assert all(v > 1 for v in ov["bytes_per_token"].values())


def test_cli_train_encode_eval(tmp_path, demo_corpus):
    out = tmp_path / "tok"
    r = runner.invoke(
        app,
        ["tokenizer", "train", "--input", str(demo_corpus), "--vocab-size", "3000", "--out", str(out),
         "--max-bytes", "300000", "--holdout-fraction", "0.05", "--weight", "lang:en=0.5", "--no-progress"],
    )
    assert r.exit_code == 0, r.output
    assert "trained 3,000 / 3,000 tokens" in r.output
    for f in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "train_report.json"):
        assert (out / f).is_file()
    r = runner.invoke(app, ["tokenizer", "encode", "--tokenizer", str(out), "--ids", "2026"])
    assert r.exit_code == 0 and len(r.output.split()) == 2
    r = runner.invoke(app, ["tokenizer", "encode", "--tokenizer", str(out), "The 1234567!"])
    assert "'234'" in r.output and "' 1'" in r.output
    r = runner.invoke(
        app,
        ["tokenizer", "eval", "-t", str(out), "--input", str(demo_corpus), "--split", "heldout",
         "--holdout-fraction", "0.05", "--max-bytes", "200000", "--openai", "o200k_base", "--json"],
    )
    assert r.exit_code == 0, r.output
    res = json.loads(r.output)
    assert res["overall"]["digit_aligned"]["tok"] == 1.0
    assert set(res["tokenizers"]) == {"tok", "o200k_base"}


def test_cli_errors(tmp_path):
    r = runner.invoke(app, ["tokenizer", "train", "--input", str(tmp_path / "missing"), "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "input not found" in r.output
    r = runner.invoke(app, ["tokenizer", "train", "--input", "x", "--out", "o", "--vocab-size", "10"])
    assert r.exit_code == 2 and "vocab_size" in r.output
    r = runner.invoke(app, ["tokenizer", "train", "--input", "x", "--out", "o", "--weight", "en=2"])
    assert r.exit_code == 2 and "lang:CODE=W" in r.output
    r = runner.invoke(app, ["tokenizer", "encode", "--tokenizer", str(tmp_path), "x"])
    assert r.exit_code == 2 and "no tokenizer.json" in r.output


def test_non_byte_level_tokenizer_json(tmp_path):
    """Any tokenizer.json evaluates: token byte lengths come from offsets when the
    vocabulary is not byte-level."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"[UNK]": 0, "héllo": 1, "world": 2, "12": 3}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.save(str(tmp_path / "tokenizer.json"))
    cand = HFCandidate(str(tmp_path / "tokenizer.json"), "words")
    assert not cand.byte_level
    assert cand.token_lengths(["héllo world 12"]) == [[6, 6, 3]]  # spaces count with the next token
    res = evaluate([cand], [Doc("héllo world 12", "en", "web")])
    assert res["overall"]["bytes_per_token"]["words"] == round(15 / 3, 4)


def test_cli_train_sharded_with_budget(tmp_path, demo_corpus):
    # A fresh process, as a user runs it: the budget covers the trainer's whole process
    # tree, and inside pytest that tree also holds what earlier tests started (Ray).
    out = tmp_path / "tok"
    r = subprocess.run([sys.executable, "-m", "jobs.cli", "tokenizer", "train", "--input", str(demo_corpus),
                        "--out", str(out), "--vocab-size", "3000", "--max-bytes", "200000", "--route", "sharded",
                        "--workers", "1", "--max-memory", "1.5GB", "--no-progress"],
                       capture_output=True, text=True, timeout=600)
    output = r.stdout + r.stderr
    assert r.returncode == 0, output
    assert "sharded:" in output and "budget 1.5 GB kept" in output
    report = json.loads((out / "train_report.json").read_text())
    assert report["counts"]["within_budget"] is True and not (out / "_counts").exists()
    r = runner.invoke(app, ["tokenizer", "train", "--input", str(demo_corpus), "--out", str(tmp_path / "t2"),
                            "--route", "sharded", "--max-memory", "lots"])
    assert r.exit_code == 2 and "max_memory" in r.output
