"""The out-of-core route: chunked counting, spilled runs, k-way merge, pruning, budget, resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tokenizer
from rsdb.errors import ConfigError
from tokenizer.pretokenize import PRETOKENIZERS, build_pre_tokenizer
from tokenizer.sharded import choose_kept, count_chunked, merge_runs

REPO = Path(__file__).resolve().parents[2]

# Spaces of every kind next to letters, digits, punctuation, line breaks and marks:
# where cutting text into chunks before a space could go wrong.
_CHARS = list(" \t\n\r\x0b\x0c\x1c\x85\xa0\u2009\u3000.,;/_-'(a1Zé東に한") + ["\u0301", "\u200d", "😀"]


def _direct(texts, kind):
    pre = build_pre_tokenizer(kind)
    return Counter(p for t in texts for p, _ in pre.pre_tokenize_str(t))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_CHARS), max_size=30).map("".join), st.sampled_from(PRETOKENIZERS))
def test_chunked_counts_equal_direct_pretokenization(text, kind):
    assert count_chunked([text], kind) == _direct([text], kind)


def test_chunked_counts_on_real_text(demo_corpus):
    from tokenizer.corpus import iter_docs

    texts = [d.text for d in iter_docs(tokenizer.CorpusConfig(inputs=[str(demo_corpus)], max_bytes=600_000), "all")]
    for kind in PRETOKENIZERS:
        assert count_chunked(texts, kind) == _direct(texts, kind)


def test_merge_runs_sums_sorted_runs(tmp_path):
    runs = []
    parts = [{"a": 2, "c": 1, "Ġx": 5}, {"b": 1, "c": 4}, {"a": 1, "Ġx": 1, "zz": 3}]
    for i, part in enumerate(parts):
        p = tmp_path / f"u{i:06d}.tsv"
        p.write_text("".join(f"{k}\t{v}\n" for k, v in sorted(part.items())))
        runs.append(p)
    res = merge_runs(runs, tmp_path / "merged.tsv", progress=False)
    lines = (tmp_path / "merged.tsv").read_text().splitlines()
    assert lines == ["a\t3", "b\t1", "c\t5", "zz\t3", "Ġx\t6"]
    assert res["distinct"] == 5 and res["mass"] == 18 and res["run_lines"] == 8
    assert res["hist"] == {3: [2, 3], 1: [1, 1], 5: [1, 1], 6: [1, 2]}


def test_choose_kept_budget_and_ties():
    hist = {100: [1, 5], 10: [4, 20], 1: [1000, 9000]}
    assert choose_kept(hist, 1, None, None) == (1, 1000)  # everything
    assert choose_kept(hist, 2, None, None) == (10, 4)
    assert choose_kept(hist, 1, 3, None) == (10, 2)  # top-3: 1 + 2 of the 4 tied at 10
    from tokenizer.sharded import train_cost

    assert choose_kept(hist, 1, None, train_cost(1, 5) + train_cost(2, 10)) == (10, 2)


def _cfg(corpus, max_bytes=400_000, **kw):
    return tokenizer.TrainConfig(inputs=[str(corpus)], vocab_size=3000, max_bytes=max_bytes, **kw)


def test_sharded_route_matches_direct(demo_corpus):
    """Without pruning, the spilled and merged counts learn the direct route's merges exactly."""
    direct = tokenizer.train(_cfg(demo_corpus)).tokenizer
    res = tokenizer.train(_cfg(demo_corpus, route="sharded", workers=2, unit_bytes=60_000))
    assert res.tokenizer.to_str() == direct.to_str()
    c = res.report["counts"]
    assert c["units"] >= 4 and c["units_counted"] == c["units"] and c["kept_mass_fraction"] == 1.0
    assert c["run_lines"] > c["distinct"] > 0


def test_sharded_route_on_ray(demo_corpus, ray_cluster):
    direct = tokenizer.train(_cfg(demo_corpus, max_bytes=200_000)).tokenizer
    res = tokenizer.train(_cfg(demo_corpus, max_bytes=200_000, route="sharded", backend="ray", workers=2,
                               unit_bytes=40_000))
    assert res.report["counts"]["units_counted"] >= 3
    assert res.tokenizer.to_str() == direct.to_str()


def test_sharded_pruning_reports_kept_mass(demo_corpus):
    res = tokenizer.train(_cfg(demo_corpus, route="sharded", workers=1, unit_bytes=100_000, min_count=2,
                               max_words=4000))
    c = res.report["counts"]
    assert c["kept_distinct"] == 4000 < c["distinct"]
    assert 0.5 < c["kept_mass_fraction"] < 1.0 and c["threshold_count"] >= 2
    assert res.tokenizer.get_vocab_size() == 3000


def test_max_memory_is_planned_and_measured(demo_corpus):
    with pytest.raises(ConfigError, match="max_memory"):
        tokenizer.TrainConfig.parse(inputs=["x"], route="sharded", max_memory="lots")
    with pytest.raises(ConfigError, match="too small"):
        tokenizer.train(_cfg(demo_corpus, route="sharded", max_memory="300MB"))
    # Measured in a fresh process: the budget covers the trainer's process tree, which
    # inside pytest also holds what earlier tests started (Ray workers).
    code = ("import json, sys, tokenizer; "
            "cfg = tokenizer.TrainConfig(inputs=[sys.argv[1]], vocab_size=3000, max_bytes=400_000, "
            "route='sharded', workers=1, max_memory='1.5GB'); "
            "print(json.dumps(tokenizer.train(cfg).report['counts']))")
    p = subprocess.run([sys.executable, "-c", code, str(demo_corpus)], capture_output=True, text=True,
                       timeout=600, cwd=REPO)
    assert p.returncode == 0, p.stderr
    c = json.loads(p.stdout.strip().splitlines()[-1])
    assert c["plan"]["budget"] == 1_500_000_000 and c["within_budget"] is True
    assert 0 < c["peak_rss_tree_mb"] <= 1500


def test_work_dir_of_another_config_is_refused(demo_corpus, tmp_path):
    work = tmp_path / "w"
    tokenizer.train(_cfg(demo_corpus, route="sharded", workers=1, work_dir=str(work), keep_counts=True))
    assert (work / "state.json").exists()
    with pytest.raises(ConfigError, match="another corpus or config"):
        tokenizer.train(_cfg(demo_corpus, route="sharded", workers=1, work_dir=str(work), seed=7))


_CHILD = """
import sys
sys.path.insert(0, {repo!r})
import tokenizer
if __name__ == "__main__":
    cfg = tokenizer.TrainConfig.model_validate_json({cfg!r})
    tokenizer.train(cfg)
"""


@pytest.mark.timeout(120)
def test_counting_resumes_after_kill_9(demo_corpus, tmp_path):
    """kill -9 of a real training process (and its workers) mid-count; the rerun
    recounts no finished unit and learns the same tokenizer as the direct route."""
    work = tmp_path / "work"
    cfg = _cfg(demo_corpus, route="sharded", workers=1, unit_bytes=8_000, max_bytes=900_000,
               work_dir=str(work), keep_counts=True)
    script = tmp_path / "child.py"
    script.write_text(_CHILD.format(repo=str(REPO), cfg=cfg.model_dump_json()))
    proc = subprocess.Popen([sys.executable, str(script)], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    runs = work / "runs"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and len(list(runs.glob("u*.json"))) < 3:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the job and its counting worker, as kill -9 would
    proc.wait()
    done_at_kill = sorted(runs.glob("u*.json"))
    assert len(done_at_kill) >= 3
    before = {p.name: p.read_text() for p in done_at_kill}
    res = tokenizer.train(cfg)
    c = res.report["counts"]
    assert c["units_resumed"] >= len(done_at_kill) and c["units_counted"] >= 1, c
    assert c["units_resumed"] + c["units_counted"] == c["units"]
    for name, text in before.items():  # finished units were not rewritten
        assert json.loads((runs / name).read_text()) == json.loads(text)
    direct = tokenizer.train(_cfg(demo_corpus, max_bytes=900_000)).tokenizer
    assert res.tokenizer.to_str() == direct.to_str()
