import subprocess
import sys


def test_cli_help_lists_subcommands():
    out = subprocess.run(
        [sys.executable, "-m", "jobs.cli", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for sub in ("rsdb", "tokenizer"):
        assert sub in out


def test_core_extension_loads():
    from rsdb import _core

    assert hasattr(_core, "Core")
