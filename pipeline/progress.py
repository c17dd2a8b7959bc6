"""What a curate run shows on the user's terminal: one bar per phase, and no Ray noise.

Ray Data's own progress output is per operator and interleaves with Ray's log lines
(deprecation warnings, token-auth notices); a user wants to know how many units are
done and how fast rows go. :class:`UnitProgress` draws that bar on a terminal only (a
log file or a Kubernetes pod gets no carriage-return spam), and :func:`quiet_ray` keeps
Ray's messages out of the terminal unless ``--verbose``.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import warnings
from collections.abc import Iterable
from typing import Any

__all__ = ["UnitProgress", "quiet_ray"]


class UnitProgress:
    """``map 0 [normalize+langid]: 12/40 units, 3,100 rows/s`` on stderr, when it is a terminal.

    Args:
        units: the work units of this phase (``index``, ``name`` and ``size`` = rows).
        desc: the bar's label.
        enabled: the config's ``progress``; False draws nothing.
    """

    def __init__(self, units: Iterable[Any], *, desc: str, enabled: bool = True, stream: Any = None):
        from tqdm import tqdm

        units = list(units)
        self._rows = {u.index: u.size for u in units}
        self._index = {u.name: u.index for u in units}
        self._done: set[int] = set()
        self.rows = 0
        self._t0 = time.perf_counter()
        stream = stream or sys.stderr
        show = enabled and getattr(stream, "isatty", lambda: False)()
        self.bar = tqdm(total=len(units), desc=desc, unit="unit", file=stream, disable=not show,
                        dynamic_ncols=True, leave=True)

    def done(self, *units: Any) -> None:
        """Mark units done, by index (int) or name (``u000012``); repeats count once."""
        for u in units:
            i = self._index[u] if isinstance(u, str) else int(u)
            if i in self._done:
                continue
            self._done.add(i)
            self.rows += self._rows.get(i, 0)
            self.bar.update(1)
        elapsed = max(time.perf_counter() - self._t0, 1e-9)
        self.bar.set_postfix_str(f"{self.rows / elapsed:,.0f} rows/s")

    @property
    def units_done(self) -> int:
        return len(self._done)

    def close(self) -> None:
        self.bar.close()

    def __enter__(self) -> "UnitProgress":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def quiet_ray() -> None:
    """Keep Ray's own output off the terminal: warnings, INFO notices, Ray Data's operator bars.

    Call before ``ray.init``. Errors still show; ``--verbose`` skips this call.
    """
    # The driver's C++ core logs straight to fd 2 (e.g. "core_worker.cc: Actor ... has constructor
    # arguments in the object store"); real failures still reach us as Python exceptions.
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"ray(\.|$)")
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"ray(\.|$)")
    for name in ("ray", "ray.data", "ray._private", "ray.util"):
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        from ray.data import DataContext
    except ImportError:  # ray[data] missing: the run will say so itself
        return
    ctx = DataContext.get_current()
    ctx.enable_progress_bars = False  # ours replaces them
    for name in ("ray", "ray.data"):  # importing ray.data configures its loggers: set the levels again
        logging.getLogger(name).setLevel(logging.ERROR)
