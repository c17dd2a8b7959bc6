"""Every pure-Python module imports on a checkout without the compiled core.

``rsdb._core`` is the only compiled piece of the tree; a contributor who works on
``pipeline/`` or ``tokenizer/`` should not have to build it. The check runs in a fresh
interpreter in which a ``sys.meta_path`` finder makes ``rsdb._core`` unimportable, walks
every package with :func:`pkgutil.walk_packages` and imports each module.

Run: ``.venv/bin/python -m pytest tests/test_imports.py -q``
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

PACKAGES = ["common", "pipeline", "tokenizer", "jobs", "rsdb"]

# The modules that legitimately need the compiled core when imported, and why.
NEEDS_CORE = {
    "rsdb._core": "it is the compiled core",
    "rsdb.loader": "RSDBLoader drives rsdb._core.Core; the status and dtype codes come from it",
    "rsdb.torch": "its IterableDataset wraps RSDBLoader (imports rsdb.loader)",
}

_CHILD = textwrap.dedent(
    """
    import importlib, json, pkgutil, sys

    class NoCore:
        def find_spec(self, name, path=None, target=None):
            if name == "rsdb._core":
                raise ModuleNotFoundError("No module named 'rsdb._core'", name=name)
            return None

    sys.meta_path.insert(0, NoCore())
    failed, imported = {}, []
    for pkg in PACKAGES:
        try:
            root = importlib.import_module(pkg)
        except Exception as e:
            failed[pkg] = repr(e)
            continue
        imported.append(pkg)
        walk = pkgutil.walk_packages(root.__path__, pkg + ".", onerror=lambda n: failed.setdefault(n, "walk"))
        for info in walk:
            try:
                importlib.import_module(info.name)
                imported.append(info.name)
            except Exception as e:
                failed[info.name] = f"{type(e).__name__}: {e}"
    try:
        import rsdb
        rsdb.RSDBLoader
        loader_error = None
    except ImportError as e:
        loader_error = str(e)
    print(json.dumps({"failed": failed, "imported": imported, "core_loaded": "rsdb._core" in sys.modules,
                      "loader_error": loader_error}))
    """
)


def _run_without_core() -> dict:
    code = f"PACKAGES = {PACKAGES!r}\n" + _CHILD
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=240, check=True
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_pure_python_modules_import_without_the_compiled_core():
    out = _run_without_core()
    assert not out["core_loaded"]
    unexpected = {name: err for name, err in out["failed"].items() if name not in NEEDS_CORE}
    assert unexpected == {}, f"these modules need rsdb._core at import time: {unexpected}"
    # the list above is exact: a module that no longer needs the core leaves it
    assert set(out["failed"]) == set(NEEDS_CORE), sorted(out["failed"])
    # the walk reached every package, deep modules included
    for name in ("common.errors", "common.fs", "common.config", "common.cluster", "pipeline.errors",
                 "tokenizer.pretokenize", "jobs._entry", "rsdb.errors", "rsdb.shards"):
        assert name in out["imported"]
    assert len(out["imported"]) > 50
    # using the loader without the core says what is missing and how to build it
    assert "rsdb._core" in out["loader_error"] and "pip install" in out["loader_error"]


def test_the_shared_base_imports_none_of_the_packages_and_not_ray():
    """``common`` sits under every package: importing all of it loads no package of ours, no Ray."""
    code = textwrap.dedent(
        """
        import importlib, json, pkgutil, sys
        import common
        for info in pkgutil.walk_packages(common.__path__, "common."):
            importlib.import_module(info.name)
        print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in
                                ("pipeline", "tokenizer", "rsdb", "jobs", "ray"))))
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                          check=True)
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []


def test_the_packages_share_one_error_root():
    import common.errors
    import pipeline.errors
    import rsdb.errors

    assert rsdb.errors.TrinityError is common.errors.TrinityError is pipeline.errors.TrinityError
    assert rsdb.errors.ConfigError is common.errors.ConfigError is pipeline.errors.ConfigError
    for cls in (pipeline.errors.PipelineError, pipeline.errors.StageError, rsdb.errors.ShardError,
                rsdb.errors.LoaderError):
        assert issubclass(cls, common.errors.TrinityError)
