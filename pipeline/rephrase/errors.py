"""Named errors of the rephrasing engines.

Every failure an engine can have surfaces as one of these, within the engine's
timeout: a caller never waits on a dead engine. They subclass
:class:`common.errors.TrinityError`, so ``except TrinityError`` catches them.
"""

from __future__ import annotations

from common.errors import TrinityError


class EngineError(TrinityError):
    """An engine failed to produce generations for a batch.

    Args:
        backend: the engine backend (``transformers``, ``openai``, ``vllm``).
        message: what went wrong, in words.
    """

    def __init__(self, backend: str, message: str):
        self.backend = backend
        self.message = message
        super().__init__(f"{backend} engine: {message}")

    def __reduce__(self):  # keep the two-argument constructor picklable across Ray
        return (type(self), (self.backend, self.message))


class EngineTimeoutError(EngineError):
    """A generate call did not finish within ``timeout_s``; the engine is presumed hung."""


class EngineDeadError(EngineError):
    """The engine (process, actor or server) died or cannot be reached."""


class EngineOOMError(EngineError):
    """The engine ran out of (GPU) memory; retry with a smaller batch or lower utilisation."""


class EngineRequestError(EngineError):
    """One request was refused by the engine (bad input, HTTP 4xx): retrying will not help."""


def classify_exception(backend: str, exc: BaseException) -> EngineError:
    """Map an arbitrary exception from inside an engine to a named :class:`EngineError`."""
    if isinstance(exc, EngineError):
        return exc
    text = f"{type(exc).__name__}: {exc}"
    low = text.lower()
    if "outofmemory" in type(exc).__name__.lower() or "out of memory" in low:
        return EngineOOMError(backend, text)
    if "enginedead" in type(exc).__name__.lower() or "engine dead" in low or "died" in low:
        return EngineDeadError(backend, text)
    return EngineError(backend, text)


class StageInputError(TrinityError):
    """A batch lacks a column the stage needs (names the stage and the column)."""
