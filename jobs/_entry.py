"""What every job entrypoint shares: arguments, config from any fsspec URI, Ray, exit codes,
the one-line summary and the stats file.

A job module describes itself with a :class:`Job` and calls :func:`main`:

    python -m jobs.curate --config s3://bucket/configs/curate.yaml
    python -m jobs.curate --config curate.yaml --set output.path=out/x --check

Contract, shaped for batch schedulers (Kubernetes Jobs, KubeRay RayJobs, Slurm):

* Exit codes: ``0`` success, ``1`` the job failed while running, ``2`` bad arguments or an
  invalid config (checked before any work starts; a ``ConfigError`` raised later, such as an
  input that does not exist, also exits 2), ``130`` interrupted (Ctrl-C), ``143`` terminated
  (SIGTERM: the pod was deleted or preempted; rerun to resume).
* Logs go to stderr (``--log-level``); the last line on stdout is one summary line of
  ``key=value`` pairs, e.g. ``trinity-data job=curate status=succeeded elapsed_s=12.3 ...``.
* Stats: a JSON file next to the output (``<output>/<job>.job.json`` unless ``--stats`` says
  otherwise) with the status, the timings, the cluster's resources, the config and the
  library's own figures. It is written on failure too, once the config has loaded.
* Ray: under ``ray job submit`` the driver joins the cluster through ``RAY_ADDRESS``;
  elsewhere ``--address`` (the flag every ``trinity-data`` command uses; ``--ray-address``
  is kept as an alias) picks a cluster, and without either a local one is started
  (``--num-cpus`` caps it).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import json
import logging
import os
import re
import shlex
import signal
import sys
import threading
import time
import traceback
from typing import Any, Callable

from common.cluster import connect_ray
from common.config import load_mapping, read_text, validation_message  # noqa: F401 (read_text: kept importable here)
from common.errors import ConfigError, TrinityError
from common.fs import atomic_write

log = logging.getLogger("jobs")

EXIT_OK, EXIT_FAILED, EXIT_CONFIG, EXIT_INTERRUPTED, EXIT_TERMINATED = 0, 1, 2, 130, 143


class Terminated(BaseException):
    """SIGTERM arrived (Kubernetes deletes or preempts the pod); unwinds like Ctrl-C."""


def _on_sigterm_raise():
    """Turn SIGTERM into :class:`Terminated` so the stats still record how the run ended.

    Returns the previous handler, or None when not on the main thread (no handler installed).
    """
    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum, frame):
        raise Terminated()

    return signal.signal(signal.SIGTERM, handler)


@dataclasses.dataclass
class Result:
    """What a job's ``run`` returns.

    Args:
        summary: the headline figures for the summary line (small, flat: counts and sizes).
        stats: everything else worth keeping; goes to the stats file only.
    """

    summary: dict[str, Any]
    stats: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Job:
    """One entrypoint.

    Args:
        name: the job's name (``curate``); names the stats file and the summary.
        description: one paragraph for ``--help``.
        load: ``(mapping, uri) -> config``: validate the parsed YAML; raise ``ConfigError``.
        output: ``config -> URI`` of the job's output folder (the stats file goes inside).
        run: ``(config, args) -> Result``: do the work; raise ``TrinityError`` on failure.
        uses_ray: whether to connect to (or start) a Ray cluster before ``run``; a bool or
            ``config -> bool``.
        add_arguments: extra job-specific arguments, if any.
        ray_defaults: ``config -> {"address": ..., "num_cpus": ...}`` from the config's own
            Ray settings; ``--address`` / ``--num-cpus`` / ``RAY_ADDRESS`` win over them.
        preflight: ``config -> None``: checks that need the job's data (a tokenizer folder
            exists...), run after ``--check`` (which validates the config alone, anywhere)
            and before Ray starts; a ``ConfigError`` there exits 2 without starting Ray.
        stats_folder: ``config -> URI`` of the folder the stats file goes in, when it is not
            the output folder (curate: the run folder beside it, so the output folder holds
            only shards).
    """

    name: str
    description: str
    load: Callable[[dict[str, Any], str], Any]
    output: Callable[[Any], str]
    run: Callable[[Any, argparse.Namespace], Result]
    uses_ray: bool | Callable[[Any], bool] = True
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None
    ray_defaults: Callable[[Any], dict[str, Any]] | None = None
    preflight: Callable[[Any], None] | None = None
    stats_folder: Callable[[Any], str] | None = None


# ----------------------------------------------------------------------------- arguments


def build_parser(job: Job) -> argparse.ArgumentParser:
    """The job's argument parser (also used by tests to check RayJob entrypoints)."""
    ap = argparse.ArgumentParser(
        prog=f"python -m jobs.{job.name}",
        description=job.description,
        epilog="Exit codes: 0 ok, 1 job failed, 2 bad arguments or config, 130 interrupted, 143 terminated.",
    )
    ap.add_argument("--config", required=True, metavar="URI",
                    help="YAML config: a local path or any fsspec URI (s3://, gs://, https://, memory://...)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override a config key, dotted (output.path=s3://b/x); VALUE is parsed as YAML; repeatable")
    ap.add_argument("--check", action="store_true", help="validate the config and exit without running")
    ap.add_argument("--stats", metavar="URI", default=None,
                    help="where to write the stats JSON (default: <output>/<job>.job.json)")
    # --address as in `ray job submit` and every trinity-data command; --ray-address: the old spelling
    ap.add_argument("--address", "--ray-address", dest="ray_address", default=None, metavar="ADDRESS",
                    help="Ray cluster to join (default: RAY_ADDRESS, else start a local cluster)")
    ap.add_argument("--num-cpus", type=int, default=None, help="CPUs of a local cluster started by the job")
    ap.add_argument("--log-level", default=os.environ.get("TRINITY_LOG_LEVEL", "INFO"),
                    choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    if job.add_arguments:
        job.add_arguments(ap)
    return ap


# ----------------------------------------------------------------------------- config


# read_text, load_mapping (YAML from any URI plus the --set rule: VALUE read as YAML) and
# validation_message (pydantic errors as key.path: message) are the shared ones in
# common.config, imported above and kept importable from here.


# ----------------------------------------------------------------------------- output


def join(uri: str, name: str) -> str:
    """``uri/name`` for local paths and URIs alike."""
    return uri.rstrip("/") + "/" + name if "://" in uri else os.path.join(uri, name)


def write_json(uri: str, doc: dict[str, Any]) -> None:
    """Write ``doc`` at a local path or fsspec URI, atomically (see :mod:`common.fs`)."""
    atomic_write(uri, json.dumps(doc, indent=2, sort_keys=True, default=str) + "\n")


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _fmt(v: Any) -> str:
    """One shell-quoted token: newlines and runs of blanks become one space."""
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1e6 else f"{v:.0f}"
    return shlex.quote(" ".join(_ANSI.sub("", str(v)).split()))


def summary_line(job: str, status: str, elapsed: float, fields: dict[str, Any]) -> str:
    """``trinity-data job=<job> status=<status> elapsed_s=<s> k=v ...`` on one line.

    Values are shell-quoted, so ``shlex.split`` reads the line back exactly.
    """
    from pipeline.redact import redact_text

    parts = [f"job={job}", f"status={status}", f"elapsed_s={elapsed:.1f}"]
    parts += [f"{k}={redact_text(_fmt(v))}" for k, v in fields.items() if v is not None]
    return "trinity-data " + " ".join(parts)


# ----------------------------------------------------------------------------- ray


def _connect_ray(args: argparse.Namespace, defaults: dict[str, Any]) -> tuple[bool, dict[str, Any]]:
    import ray

    # --address, then RAY_ADDRESS (as ray job submit sets it), then the config's own address
    address = args.ray_address or os.environ.get("RAY_ADDRESS") or defaults.get("address")
    owns = connect_ray(address, num_cpus=args.num_cpus or defaults.get("num_cpus"), log_to_driver=True)
    res = dict(ray.cluster_resources())
    if not owns:
        return False, res
    log.info("ray: %s, resources %s", address or "local cluster", {k: res[k] for k in sorted(res) if "node:" not in k})
    return True, res


# ----------------------------------------------------------------------------- main


def main(job: Job, argv: list[str] | None = None) -> int:
    """Run ``job`` with ``argv`` (default ``sys.argv[1:]``) and return the exit code."""
    ap = build_parser(job)
    try:
        args = ap.parse_args(argv)
    except SystemExit as e:  # --help (0) or a usage error (2)
        return int(e.code or 0)
    if not logging.getLogger().handlers:  # leave a host's logging (pytest, a notebook) alone
        logging.basicConfig(
            level=args.log_level, stream=sys.stderr,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
        from pipeline.redact import RedactingFilter

        for handler in logging.getLogger().handlers:  # ours: no credential reaches the job's log
            handler.addFilter(RedactingFilter())
    started = time.perf_counter()
    started_at = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")

    def finish(status: str, code: int, fields: dict[str, Any]) -> int:
        print(summary_line(job.name, status, time.perf_counter() - started, fields), flush=True)
        return code

    # 1. config: everything is validated before any work starts
    try:
        raw = load_mapping(args.config, args.overrides)
        try:
            cfg = job.load(raw, args.config)
        except TrinityError:
            raise
        except Exception as e:  # pydantic ValidationError and friends
            raise ConfigError(f"{args.config}: {validation_message(e)}") from None
        output = job.output(cfg)
        stats_folder = job.stats_folder(cfg) if job.stats_folder is not None else output
    except TrinityError as e:
        log.error("%s", e)
        return finish("config_error", EXIT_CONFIG, {"config": args.config, "error": str(e)})
    stats_uri = args.stats or join(stats_folder, f"{job.name}.job.json")
    if args.check:
        return finish("config_ok", EXIT_OK, {"config": args.config, "output": output})

    # 2. the run
    doc: dict[str, Any] = {
        "job": job.name,
        "config_uri": args.config,
        "overrides": args.overrides,
        "config": _dump(cfg),
        "output": output,
        "started_at": started_at,
        "argv": sys.argv if argv is None else [f"jobs.{job.name}", *argv],
    }
    owns_ray = False
    status, code, result, error = "failed", EXIT_FAILED, None, None
    previous = None
    try:
        if job.preflight is not None:
            job.preflight(cfg)
        if job.uses_ray(cfg) if callable(job.uses_ray) else job.uses_ray:
            defaults = job.ray_defaults(cfg) if job.ray_defaults else {}
            owns_ray, doc["ray_resources"] = _connect_ray(args, defaults)
        previous = _on_sigterm_raise()  # after ray.init, which installs a SIGTERM handler of its own
        result = job.run(cfg, args)
        status, code = "succeeded", EXIT_OK
    except KeyboardInterrupt:
        status, code, error = "interrupted", EXIT_INTERRUPTED, "interrupted"
        log.error("interrupted")
    except Terminated:
        status, code, error = "terminated", EXIT_TERMINATED, "terminated by SIGTERM"
        log.error("terminated by SIGTERM (pod deleted or preempted); rerun to resume")
    except ConfigError as e:  # found only once the run looked (an input that does not exist...)
        status, code, error = "config_error", EXIT_CONFIG, str(e)
        log.error("%s: %s", job.name, e)
    except TrinityError as e:  # a Ray task error carrying one of ours has the remote trace in str()
        error = str(e) if "\n" not in str(e) else describe_error(e)
        log.error("%s failed: %s", job.name, e)
    except Exception as e:  # not one of ours: a bug or an environment problem; keep the trace
        error = describe_error(e)
        log.error("%s failed:\n%s", job.name, traceback.format_exc())
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        if owns_ray:
            import ray

            ray.shutdown()
    elapsed = time.perf_counter() - started
    error = _ANSI.sub("", error) if error else error  # Ray colours its exception text
    doc.update(
        status=status,
        elapsed_s=round(elapsed, 3),
        error=error,
        summary=result.summary if result else {},
        stats=result.stats if result else {},
    )
    fields: dict[str, Any] = dict(result.summary) if result else {}
    try:
        from pipeline.redact import redact_config

        write_json(stats_uri, redact_config(doc))  # storage options, URL userinfo, tokens: never persisted
        fields.update(output=output, stats=stats_uri)
    except Exception as e:  # the run's status wins; a stats failure is reported, not fatal
        log.error("could not write stats to %s: %s", stats_uri, e)
        fields.update(output=output, stats="unwritten")
    if error:
        fields["error"] = error.splitlines()[0][:300]
    return finish(status, code, fields)


_ERROR_LINE = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception|Exit)): (.+)$")


def describe_error(exc: BaseException) -> str:
    """``Type: message`` of the error that started it all.

    Ray wraps a worker's exception in ``RayTaskError`` / ``UserCodeException`` whose text holds
    the remote traceback, innermost (root) error first; that line names the real problem.
    """
    root = _root_cause(exc)
    for text in (str(exc), str(root)):
        for line in text.splitlines():
            m = _ERROR_LINE.match(line.strip())
            if m and not m.group(1).startswith("ray."):
                return f"{m.group(1).rsplit('.', 1)[-1]}: {m.group(2)}"
    return f"{type(root).__name__}: {root}"


def _root_cause(exc: BaseException) -> BaseException:
    """The innermost exception: Ray wraps a worker's error in RayTaskError/UserCodeException."""
    seen = {id(exc)}
    while True:
        nxt = getattr(exc, "cause", None) or exc.__cause__
        if not isinstance(nxt, BaseException) or id(nxt) in seen:
            return exc
        seen.add(id(nxt))
        exc = nxt


def _dump(cfg: Any) -> Any:
    dump = getattr(cfg, "model_dump", None)
    if callable(dump):
        return dump(mode="json")
    if dataclasses.is_dataclass(cfg):
        return dataclasses.asdict(cfg)
    return cfg if isinstance(cfg, (dict, list, str, int, float)) else repr(cfg)


def run_module(job: Job) -> None:
    """``if __name__ == "__main__": run_module(JOB)``: exit with :func:`main`'s code."""
    sys.exit(main(job))
