"""Engine calls that never hang and never lose a row.

:class:`ResilientEngine` wraps an engine config and owns the engine's life in
one worker (a Ray actor):

- every ``generate`` runs on a helper thread and is abandoned after the engine's
  ``timeout_s``, surfacing :class:`~pipeline.rephrase.errors.EngineTimeoutError` (Python cannot
  kill a thread: an abandoned in-process generation runs on in the background, which is why
  GPU engines exit the process instead, see below);
- after a timeout, death or OOM the engine is closed and rebuilt (up to
  ``max_engine_restarts`` consecutive rebuilds; a success resets the count);
  beyond that the named error propagates, so the Ray task fails loudly;
- a batch that fails is bisected and each half retried, so one poisonous row (or
  an OOM on a big batch) costs only itself: a single row that still fails comes
  back as a ``Generation`` with ``finish_reason="error"`` and its error text.

A hung ``vllm`` engine holds its GPU memory, so with ``exit_process_on_hang`` the
worker process exits instead: Ray restarts the actor (``max_restarts``) and
re-runs its batch (``max_task_retries``).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any, Callable, Sequence

from .engines import build_engine
from .engines.base import FINISH_ERROR, Engine, Generation, Prompt, SamplingConfig
from .errors import EngineDeadError, EngineError, EngineOOMError, EngineTimeoutError, classify_exception

logger = logging.getLogger(__name__)

_RESTART_ON = (EngineTimeoutError, EngineDeadError, EngineOOMError)


class ResilientEngine:
    """Lazily built engine with timeouts, restarts and bisection (see module docstring).

    Args:
        config: an engine config (any backend).
        max_engine_restarts: consecutive rebuilds allowed before the error propagates.
        exit_process_on_hang: exit the worker process on a timeout (for GPU engines under Ray).
        factory: builds the engine (tests may pass their own); defaults to :func:`build_engine`.
    """

    def __init__(
        self,
        config: Any,
        *,
        max_engine_restarts: int = 2,
        exit_process_on_hang: bool = False,
        factory: Callable[[Any], Engine] = build_engine,
    ):
        self.config = config
        self.max_engine_restarts = max_engine_restarts
        self.exit_process_on_hang = exit_process_on_hang
        self._factory = factory
        self._engine: Engine | None = None
        self._failures = 0
        self.restarts = 0

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = self._factory(self.config)
        return self._engine

    def _timed(self, prompts: Sequence[Prompt], sampling: SamplingConfig, seeds: Sequence[int] | None) -> list[Generation]:
        engine = self.engine
        timeout = float(getattr(self.config, "timeout_s", 600.0))
        box: dict[str, Any] = {}

        def work():
            try:
                box["out"] = engine.generate(prompts, sampling, seeds)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
                box["exc"] = exc

        t = threading.Thread(target=work, name="engine-generate", daemon=True)
        t0 = time.monotonic()
        t.start()
        t.join(timeout)
        if t.is_alive():
            raise EngineTimeoutError(engine.backend, f"generate({len(prompts)} prompts) did not finish within {timeout:g}s")
        if "exc" in box:
            raise classify_exception(engine.backend, box["exc"])
        logger.debug("engine generated %d in %.2fs", len(prompts), time.monotonic() - t0)
        return box["out"]

    def _restart(self, err: EngineError) -> None:
        self._failures += 1
        if self._failures > self.max_engine_restarts:
            raise err
        if isinstance(err, EngineTimeoutError) and self.exit_process_on_hang:
            logger.error("%s; exiting the worker so Ray restarts it and retries the batch", err)
            os._exit(75)
        logger.warning("%s; restarting the engine (%d/%d)", err, self._failures, self.max_engine_restarts)
        engine, self._engine = self._engine, None
        if engine is not None:
            try:
                engine.close()
            except Exception:  # noqa: BLE001 - a broken engine may fail to close; it is dropped anyway
                logger.exception("closing the failed engine")
        self.restarts += 1

    def _ensure_engine(self) -> Engine:
        """Build the engine; a bad config (EngineRequestError) propagates at once, OOM/death are retried."""
        while True:
            try:
                return self.engine
            except _RESTART_ON as err:
                self._restart(err)

    def generate(
        self, prompts: Sequence[Prompt], sampling: SamplingConfig, seeds: Sequence[int] | None = None
    ) -> list[Generation]:
        """Generate for every prompt; failures come back as ``finish_reason="error"`` rows.

        Raises:
            EngineError: when the engine cannot be (re)built or keeps dying past ``max_engine_restarts``.
        """
        prompts = list(prompts)
        seeds = list(seeds) if seeds is not None else None
        if not prompts:
            return []
        self._ensure_engine()
        try:
            out = self._timed(prompts, sampling, seeds)
            self._failures = 0
            return out
        except _RESTART_ON as err:
            self._restart(err)
            last: EngineError = err
        except EngineError as err:
            last = err
        if len(prompts) == 1:
            return [Generation(text="", finish_reason=FINISH_ERROR, extra={"error": str(last)})]
        mid = len(prompts) // 2
        return self.generate(prompts[:mid], sampling, seeds[:mid] if seeds else None) + self.generate(
            prompts[mid:], sampling, seeds[mid:] if seeds else None
        )

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()
            self._engine = None
