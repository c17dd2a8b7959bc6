"""A short seeded run of ``benchmarks/fuzz_shards.py`` (``make fuzz`` runs the long one).

Every case runs in a worker subprocess, so a crash is counted, not fatal. The run also
plants one crashing and one hanging case to show the driver counts them as such.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "fuzz_shards.py"


def _run(tmp_path, *args):
    out = tmp_path / "fuzz.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), *args, "--json-out", str(out)],
                          capture_output=True, text=True, timeout=240)
    lines = [json.loads(x) for x in proc.stdout.splitlines() if x.startswith("{")]
    return proc, lines, json.loads(out.read_text())


def test_short_fuzz_is_all_shard_error_or_exact(tmp_path):
    proc, lines, res = _run(tmp_path, "--arrow", "110", "--megatron", "60", "--seed", "7",
                            "--selftest", "--case-timeout", "3")
    assert proc.returncode == 0, proc.stdout[-3000:]
    s = res["summary"]
    assert s["arrow"]["cases"] == 112 and s["megatron"]["cases"] == 60
    for kind in ("arrow", "megatron"):
        assert s[kind]["silent_wrong"] == 0 and s[kind]["other_error"] == 0
    # Only the two planted cases crash / hang, and they are reported as such.
    assert (s["arrow"]["crash"], s["arrow"]["hang"]) == (1, 1)
    assert (s["megatron"]["crash"], s["megatron"]["hang"]) == (0, 0)
    assert sorted(f["cls"] for f in res["failures"]) == ["selftest_crash", "selftest_hang"]
    assert s["shard_error_or_exact_pct"] == 100.0
    classes = {(x["kind"], x["class"]): x for x in lines if x["name"] == "fuzz_class"}
    assert len(classes) >= 25 and all(sum(v[o] for o in ("shard_error", "exact")) >= 1 for v in classes.values()
                                      if not v["class"].startswith("selftest"))
    # Mutations that change nothing the reader uses must read exactly as before.
    assert classes[("arrow", "manifest_reformat")]["exact"] >= 1
    assert classes[("arrow", "offset_nonzero")]["exact"] == sum(classes[("arrow", "offset_nonzero")][o] for o in
                                                                 ("shard_error", "exact", "silent_wrong"))


def test_the_oracle_sees_silent_corruption_when_verification_is_off(tmp_path):
    """With verify='off' the same harness reports silent wrong output: the check above is not vacuous."""
    proc, lines, res = _run(tmp_path, "--arrow", "0", "--megatron", "40", "--seed", "3", "--verify", "off")
    assert proc.returncode == 1
    classes = {x["class"]: x for x in lines if x["name"] == "fuzz_class"}
    assert classes["bin_flip"]["silent_wrong"] >= 1 and classes["consistent_rewrite"]["silent_wrong"] >= 1
