"""rsdb.naming.source_dir_name: the one rule for a source's shard folder name."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from rsdb.naming import source_dir_name


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
