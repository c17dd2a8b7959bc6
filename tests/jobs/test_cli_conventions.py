"""One set of conventions for every command: --address, exit code 2 for config errors, a progress bar.

Run: ``.venv/bin/python -m pytest tests/jobs/test_cli_conventions.py -q``
"""

from __future__ import annotations

import io
import logging

import pytest
from typer.testing import CliRunner

import rsdb
from jobs.cli import app

runner = CliRunner()


def _flat(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.parametrize("command", [["curate"], ["tokenize"]])
def test_every_ray_command_takes_address(command):
    res = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
    assert res.exit_code == 0 and "--address" in res.output and "RAY_ADDRESS" in res.output


def test_job_entrypoints_take_address_and_the_old_spelling():
    from jobs._entry import build_parser
    from jobs.tokenize import JOB

    ap = build_parser(JOB)
    assert ap.parse_args(["--config", "c", "--address", "ray://h:10001"]).ray_address == "ray://h:10001"
    assert ap.parse_args(["--config", "c", "--ray-address", "h:6379"]).ray_address == "h:6379"


def test_curate_address_flag_and_env_reach_the_config(tmp_path, monkeypatch):
    import pipeline.runner
    from pipeline.errors import PipelineError

    seen = []

    def fake_run(cfg, overwrite=False):
        seen.append(cfg.ray.address)
        raise PipelineError("stop here")

    monkeypatch.setattr(pipeline.runner, "run_pipeline", fake_run)
    (tmp_path / "in.jsonl").write_text('{"id": "a", "text": "hello"}\n')
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"input: {{paths: [{tmp_path / 'in.jsonl'}]}}\noutput: {{path: {tmp_path / 'out'}}}\n")
    res = runner.invoke(app, ["curate", "-c", str(cfg), "--verbose", "--address", "10.0.0.1:6379"])
    assert res.exit_code == 1 and "stop here" in res.output
    res = runner.invoke(app, ["curate", "-c", str(cfg), "--verbose"], env={"RAY_ADDRESS": "10.0.0.2:6379"})
    assert seen == ["10.0.0.1:6379", "10.0.0.2:6379"]


def test_pipeline_validate_checks_that_inputs_exist(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"input: {{paths: [{tmp_path / 'missing.jsonl'}]}}\noutput: {{path: {tmp_path / 'out'}}}\n")
    res = runner.invoke(app, ["pipeline", "validate", str(cfg)])
    assert res.exit_code == 2 and "missing.jsonl" in _flat(res.output) and "not found" in _flat(res.output)
    (tmp_path / "missing.jsonl").write_text('{"id": "a", "text": "hello"}\n')
    res = runner.invoke(app, ["pipeline", "validate", str(cfg)])
    assert res.exit_code == 0 and "1 input file" in res.output


def test_rsdb_stream_bad_arguments_exit_2(tmp_path):
    rsdb.write_shards(tmp_path / "s", [[1, 2, 3], [4, 5]])
    res = runner.invoke(app, ["rsdb", "stream", str(tmp_path / "s"), "--seq-len", "0", "--steps", "1"])
    assert res.exit_code == 2 and "seq_len" in res.output
    res = runner.invoke(app, ["rsdb", "stream", str(tmp_path / "s"), "--seq-len", "4", "--steps", "1",
                              "--batch-size", "1", "--buffer-docs", "1"])
    assert res.exit_code == 0, res.output


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def _units(n):
    from pipeline.read import WorkUnit

    return [WorkUnit(i, "jsonl", "x.jsonl", 10 * i, 10 * i + 7) for i in range(n)]


def test_progress_bar_shows_units_and_rows_per_second_on_a_terminal():
    from pipeline.progress import UnitProgress

    tty = _Tty()
    with UnitProgress(_units(3), desc="map 0 [normalize]", stream=tty) as bar:
        bar.done(0)
        bar.done("u000001", 2, 2)  # names or indexes; a repeat counts once
    text = tty.getvalue()
    assert "map 0 [normalize]" in text and "3/3" in text and "rows/s" in text
    assert bar.units_done == 3 and bar.rows == 21
    for enabled, stream in ((True, io.StringIO()), (False, _Tty())):  # a log file, or progress: false
        with UnitProgress(_units(2), desc="x", enabled=enabled, stream=stream) as bar:
            bar.done(0, 1)
        assert stream.getvalue() == ""


def test_quiet_ray_hides_ray_logs_and_operator_bars(monkeypatch):
    from ray.data import DataContext

    from pipeline.progress import quiet_ray

    ctx = DataContext.get_current()
    monkeypatch.setattr(ctx, "enable_progress_bars", True)
    monkeypatch.setenv("RAY_BACKEND_LOG_LEVEL", "unset")  # so teardown restores the original state
    monkeypatch.delenv("RAY_BACKEND_LOG_LEVEL")
    levels = {n: logging.getLogger(n).level for n in ("ray", "ray.data", "ray._private", "ray.util")}
    try:
        quiet_ray()
        assert ctx.enable_progress_bars is False
        assert logging.getLogger("ray").level == logging.ERROR
        import os

        assert os.environ["RAY_BACKEND_LOG_LEVEL"] == "fatal"
    finally:
        for n, lvl in levels.items():
            logging.getLogger(n).setLevel(lvl)


def test_curate_leaves_a_callers_ray_session_running(tmp_path, monkeypatch, ray_cluster):
    import ray

    import pipeline.runner
    from pipeline.errors import PipelineError

    def fake_run(cfg, overwrite=False):
        raise PipelineError("stop here")

    monkeypatch.setattr(pipeline.runner, "run_pipeline", fake_run)
    (tmp_path / "in.jsonl").write_text('{"id": "a", "text": "hello"}\n')
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"input: {{paths: [{tmp_path / 'in.jsonl'}]}}\noutput: {{path: {tmp_path / 'out'}}}\n")
    res = runner.invoke(app, ["curate", "-c", str(cfg)])
    assert res.exit_code == 1 and "stop here" in res.output
    assert ray.is_initialized(), "curate stopped a Ray session it did not start"
