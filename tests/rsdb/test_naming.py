"""rsdb.naming.source_dir_name: the one rule for a source's shard folder name."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

import pytest

from rsdb.naming import SourceNameClash, claim_source_dir, source_dir_name


@given(st.text())
def test_folder_name_is_portable_and_visible(name):
    safe = source_dir_name(name)
    assert re.fullmatch(r"[A-Za-z0-9_.-]+", safe)
    assert not safe.startswith((".", "_"))
    assert source_dir_name(safe) == safe  # already-safe names are kept as they are


@given(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]*", fullmatch=True))
def test_safe_names_are_unchanged(name):
    assert source_dir_name(name) == name


def test_examples():
    assert source_dir_name("web/en wiki") == "web_en_wiki"
    assert source_dir_name("_private") == "s_private"
    assert source_dir_name("héllo") == "h_llo"


def test_two_sources_that_share_a_folder_are_refused_naming_both():
    taken: dict[str, str] = {}
    assert claim_source_dir(taken, "web en") == "web_en"
    assert claim_source_dir(taken, "web en") == "web_en"  # the same source again is fine
    with pytest.raises(SourceNameClash, match=r"'web en' and 'web/en' both map to shard folder 'web_en'"):
        claim_source_dir(taken, "web/en")


def test_write_jsonl_refuses_two_sources_that_share_a_folder(tmp_path):
    from typer.testing import CliRunner

    from rsdb.cli import app

    src = tmp_path / "docs.jsonl"
    src.write_text('{"text": "one", "src": "web en"}\n{"text": "two", "src": "web/en"}\n')
    res = CliRunner().invoke(app, ["write-jsonl", str(src), "--out", str(tmp_path / "out"), "--source-field", "src"])
    assert res.exit_code == 2
    assert "docs.jsonl:2:" in res.output and "both map to shard folder 'web_en'" in res.output
