"""Memory sizes and measurements for the out-of-core training route.

``parse_bytes("8GB")`` reads a budget; :func:`tree_rss` measures what a process and
all its descendants hold right now (Linux ``/proc``), which is what a budget is
about when the work runs in worker processes; :class:`PeakSampler` samples that in
a thread and keeps the peak.
"""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path

from common.errors import ConfigError

_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9,
          "t": 10**12, "tb": 10**12, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
_SIZE = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*")


def parse_bytes(value: str | int | float) -> int:
    """``8GB`` -> 8e9, ``512MiB`` -> 2**29, plain numbers are bytes.

    >>> parse_bytes("8GB"), parse_bytes("1.5 GiB"), parse_bytes(1000)
    (8000000000, 1610612736, 1000)
    """
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        n = int(value)
    else:
        m = _SIZE.fullmatch(str(value))
        unit = m.group(2).lower() if m else None
        if m is None or unit not in _UNITS:
            raise ConfigError(f"not a size: {value!r} (expected e.g. 8GB, 512MB, 2GiB or a number of bytes)")
        n = int(float(m.group(1)) * _UNITS[unit])
    if n <= 0:
        raise ConfigError(f"size must be positive, got {value!r}")
    return n


def _rss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            text = Path(f"/proc/{pid}/task/{task}/children").read_text()
            out += [int(c) for c in text.split()]
    except OSError:
        pass
    return out


def tree_rss(pid: int | None = None) -> int:
    """Resident bytes of ``pid`` (default: this process) plus all its descendants."""
    todo, total, seen = [pid or os.getpid()], 0, set()
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        total += _rss(p)
        todo += _children(p)
    return total


class PeakSampler:
    """Samples :func:`tree_rss` every ``interval`` seconds in a thread; ``peak`` holds
    the largest value seen (call :meth:`stop`, or use as a context manager)."""

    def __init__(self, pid: int | None = None, interval: float = 0.2):
        self.pid, self.interval, self.peak = pid, interval, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_rss(self.pid))
            self._stop.wait(self.interval)

    def start(self) -> "PeakSampler":
        self._thread.start()
        return self

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, tree_rss(self.pid))
        return self.peak

    def __enter__(self) -> "PeakSampler":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
