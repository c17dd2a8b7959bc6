"""BH tracker maths (BH, weighting, rolling stats, spike rule) and its JSONL round trip.

Run: .venv/bin/python -m pytest tests/rsdb/diagnostics -q
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from rsdb.diagnostics import BHTracker, RunLogError, SpikeRule, read_run, summarize
from rsdb.errors import ConfigError


@pytest.mark.parametrize(
    "losses, bh, loss",
    [
        ([2.0], 0.0, 2.0),  # one microbatch: BH is 0 by definition
        ([1.0, 1.0, 1.0, 1.0], 0.0, 1.0),
        ([1.0, 2.0, 3.0], 1.0, 2.0),
        ([2.0, 2.5, 2.0, 3.5], 1.0, 2.5),
        ([5.0, 1.0, 1.0, 1.0], 3.0, 2.0),  # one hard microbatch
        ([1.0, 5.0, 5.0, 5.0], 1.0, 4.0),  # one easy microbatch: BH counts only the max side
        ([-1.0, 1.0], 1.0, 0.0),
    ],
)
def test_bh_is_max_minus_mean(losses, bh, loss):
    r = BHTracker().log_step(losses)
    assert r.bh == pytest.approx(bh)
    assert r.loss == pytest.approx(loss)
    assert r.loss_min == min(losses) and r.loss_max == max(losses)
    assert r.loss_std == pytest.approx(np.std(losses))
    assert r.n_micro == len(losses)


def test_token_weighted_step_loss_keeps_unweighted_bh():
    r = BHTracker().log_step([1.0, 3.0], micro_tokens=[3, 1])
    assert r.loss == pytest.approx(1.5)  # (3*1 + 1*3) / 4
    assert r.bh == pytest.approx(1.0)  # max 3 - unweighted mean 2
    assert r.tokens == 4
    assert r.bh_rel == pytest.approx(0.5)


def test_accepts_numpy_scalars_and_counts_steps():
    t = BHTracker()
    t.log_step(np.array([1.0, 2.0], dtype=np.float32))
    r = t.log_step([np.float64(1.0), 3])
    assert r.step == 1 and r.bh == pytest.approx(1.0)
    assert t.log_step([1.0], step=10).step == 10
    assert t.log_step([1.0]).step == 11


@pytest.mark.parametrize(
    "bad, match",
    [([], "empty"), (["x"], "numbers"), ([object()], "numbers")],
)
def test_bad_micro_losses(bad, match):
    with pytest.raises(ValueError, match=match):
        BHTracker().log_step(bad)


def test_micro_tokens_must_match():
    with pytest.raises(ValueError, match="2 entries"):
        BHTracker().log_step([1.0], micro_tokens=[1, 2])
    with pytest.raises(ValueError, match="positive sum"):
        BHTracker().log_step([1.0], micro_tokens=[0])


def test_rule_validation_names_the_key():
    with pytest.raises(ConfigError, match="min_history"):
        BHTracker(rule={"window": 5, "min_history": 6})
    with pytest.raises(ConfigError, match="windw"):
        BHTracker(rule={"windw": 5})
    with pytest.raises(ConfigError, match=r"(?s)\bk\b.*greater than 0"):
        BHTracker(rule={"k": -1})


def _spikes(values, **rule):
    t = BHTracker(rule=SpikeRule(**rule))
    return [r.step for r in (t.log_step([v]) for v in values) if r.spike]


NOISE = [3.0, 3.1, 2.9, 3.05, 2.95, 3.0, 3.1, 2.9, 3.05, 2.95]  # mean 3.0, population std 0.0671


@pytest.mark.parametrize(
    "values, rule, expected",
    [
        # a jump far above the noise is flagged
        (NOISE + [4.0], dict(window=10, k=3.0, min_history=5), [10]),
        # 3.15 is 2.24 std above: a spike at k=2, not at k=3
        (NOISE + [3.15], dict(window=10, k=2.0, min_history=5), [10]),
        (NOISE + [3.15], dict(window=10, k=3.0, min_history=5), []),
        # not enough history yet: the same jump at step 3 is not flagged with min_history 5
        ([3.0, 3.1, 2.9, 9.0], dict(window=10, k=3.0, min_history=5), []),
        ([3.0, 3.1, 2.9, 9.0], dict(window=10, k=3.0, min_history=3), [3]),
        # a steadily falling loss (normal training) never spikes
        (list(np.linspace(6.0, 2.0, 40)), dict(window=10, k=3.0, min_history=5), []),
        # the window forgets: after a level shift the new level becomes normal again
        (NOISE + [5.0 + 0.1 * (i % 2) for i in range(15)], dict(window=4, k=3.0, min_history=4), [10]),
        # exactly constant history (std 0): only strictly larger values count
        ([2.0] * 6 + [2.0, 2.5], dict(window=5, k=3.0, min_history=5), [7]),
    ],
)
def test_spike_rule_table(values, rule, expected):
    assert _spikes(values, **rule) == expected


def test_spike_rule_on_bh_metric():
    t = BHTracker(rule=SpikeRule(window=5, k=3.0, min_history=3, metric="bh"))
    steps = [[1.0, 1.1], [1.0, 1.12], [1.0, 1.08], [1.0, 1.1], [1.0, 3.0]]
    recs = [t.log_step(s) for s in steps]
    assert [r.spike for r in recs] == [False, False, False, False, True]


def test_rolling_stats_match_numpy():
    vals = [3.0, 2.0, 4.0, 3.5, 2.5, 3.2, 9.0, 3.1]
    t = BHTracker(rule=SpikeRule(window=3, k=2.0, min_history=2))
    for i, v in enumerate(vals):
        r = t.log_step([v - 0.5, v + 0.5])
        prev = np.array(vals[max(0, i - 3):i])
        if i == 0:
            assert r.rolling_mean is None and r.zscore is None
            continue
        assert r.rolling_mean == pytest.approx(prev.mean())
        assert r.rolling_std == pytest.approx(prev.std())
        if i >= 2 and prev.std() > 0:
            assert r.zscore == pytest.approx((v - prev.mean()) / prev.std())
            assert r.spike == (v > prev.mean() + 2.0 * prev.std())
        assert r.rolling_bh == pytest.approx(0.5)


def test_nonfinite_loss_is_flagged_and_kept_out_of_history():
    t = BHTracker(rule=SpikeRule(window=5, k=3.0, min_history=2))
    t.log_step([2.0]); t.log_step([2.0])
    r = t.log_step([2.0, float("nan")])
    assert r.spike and r.spike_reason == "nonfinite"
    r2 = t.log_step([2.0])
    assert r2.rolling_mean == pytest.approx(2.0) and r2.rolling_std == 0.0 and not r2.spike


def test_summary_matches_numpy():
    rng = np.random.default_rng(0)
    t = BHTracker()
    micro = rng.normal(3.0, 0.3, size=(50, 4))
    for row in micro:
        t.log_step(list(row), grad_norm=1.5)
    bh = micro.max(1) - micro.mean(1)
    s = t.summary()
    assert s["steps"] == 50
    assert s["bh_mean"] == pytest.approx(bh.mean())
    assert s["bh_p95"] == pytest.approx(np.percentile(bh, 95))
    assert s["bh_max"] == pytest.approx(bh.max())
    assert s["loss_final"] == pytest.approx(micro.mean(1)[-5:].mean())  # last 10% of steps
    assert s["grad_norm_mean"] == pytest.approx(1.5)
    assert s["loss_jitter"] == pytest.approx(np.diff(micro.mean(1)).std())
    assert summarize([]) == {"steps": 0}


def test_jsonl_round_trip(tmp_path):
    out = tmp_path / "runs" / "a.jsonl"
    with BHTracker(out, run="seq", meta={"packing": "sequential"},
                   rule=SpikeRule(window=4, k=2.0, min_history=3)) as t:
        for losses in ([3.0, 3.2], [2.9, 3.0], [2.8, 2.9], [2.7, 2.8], [6.0, 6.5], [2.6, float("inf")]):
            t.log_step(losses, micro_tokens=[10, 10], grad_norm=0.5, extra={"eval_loss": 2.5})
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [x["type"] for x in lines] == ["meta"] + ["step"] * 6 + ["summary"]
    assert lines[0]["rule"]["window"] == 4 and lines[0]["meta"] == {"packing": "sequential"}
    log = read_run(out)
    assert log.run == "seq" and log.meta == {"packing": "sequential"}
    assert [r.step for r in log.records] == list(range(6))
    assert log.records[4].spike and log.records[5].spike_reason == "nonfinite"
    assert math.isinf(log.records[5].micro_losses[1])
    assert log.records[0].extra == {"eval_loss": 2.5}
    assert log.summary["spike_steps"] == [4, 5]
    assert log.records[1].bh == pytest.approx(t.records[1].bh)


def test_unfinished_run_recomputes_summary(tmp_path):
    out = tmp_path / "crash.jsonl"
    t = BHTracker(out, run="crashed")
    t.log_step([1.0, 3.0])
    t.log_step([1.0, 2.0])  # no close(): the process "crashed" here
    log = read_run(out)
    assert log.summary["steps"] == 2 and log.summary["bh_mean"] == pytest.approx(0.75)
    t.close()


@pytest.mark.parametrize(
    "content, match",
    [
        ('{"type": "meta", "run": "x"}\nnot json\n', r"bad\.jsonl:2: not JSON"),
        ('{"type": "step", "step": 0}\n', r"bad\.jsonl:1: bad step line"),
        ('{"type": "weird"}\n', r"bad\.jsonl:1: unknown line type 'weird'"),
    ],
)
def test_malformed_jsonl_names_file_and_line(tmp_path, content, match):
    p = tmp_path / "bad.jsonl"
    p.write_text(content)
    with pytest.raises(RunLogError, match=match):
        read_run(p)


def test_missing_run_log(tmp_path):
    with pytest.raises(RunLogError, match="no such run log"):
        read_run(tmp_path / "nope.jsonl")


def test_import_does_not_load_torch_or_matplotlib():
    import subprocess
    import sys

    code = ("import sys, rsdb.diagnostics, rsdb.diagnostics.cli; "
            "print(sorted(m for m in ('torch', 'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
