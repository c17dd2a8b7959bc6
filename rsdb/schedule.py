"""Scheduled batch size and sequence length: which global step starts at which token.

A run may raise its batch size (or change its sequence length) from a global token
count on, as in "batch size x2 after 5T tokens". A step's shape is the one in force at
the global token count at the step's start, so the switch happens at the first step
that starts at or after the entry's token count, on every rank and worker at once.

:class:`StepClock` maps global step numbers to global token counts and shapes for one
topology (``world_size``), starting from the token count at which the loader was
started or restored (``tokens0``). Everything is integer arithmetic over the schedule's
entries, so ranks agree exactly.

>>> clock = StepClock(world_size=2, batch_size=4, seq_len=8, schedule=[ScheduleEntry(128, batch_size=8)])
>>> [clock.tokens_at(g) for g in range(4)], clock.shape_at(2), clock.shape_at(3)
([0, 64, 128, 256], (8, 8), (8, 8))
>>> clock.first_step_at(200)
3
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Optional

from .errors import ConfigError

__all__ = ["ScheduleEntry", "StepClock", "coerce_schedule"]


@dataclass(frozen=True)
class ScheduleEntry:
    """From global token count ``tokens`` on, use this ``batch_size`` and/or ``seq_len``."""

    tokens: int
    batch_size: Optional[int] = None
    seq_len: Optional[int] = None

    def __post_init__(self) -> None:
        if not isinstance(self.tokens, int) or isinstance(self.tokens, bool) or self.tokens < 0:
            raise ConfigError(f"schedule entry: tokens must be an int >= 0, got {self.tokens!r}")
        for key in ("batch_size", "seq_len"):
            v = getattr(self, key)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
                raise ConfigError(f"schedule entry at {self.tokens} tokens: {key} must be a positive int, got {v!r}")
        if self.batch_size is None and self.seq_len is None:
            raise ConfigError(f"schedule entry at {self.tokens} tokens sets neither batch_size nor seq_len")

    def to_json(self) -> list[Any]:
        return [self.tokens, self.batch_size, self.seq_len]


def coerce_schedule(schedule: Sequence[Any] | None) -> list[ScheduleEntry]:
    """Entries from ``ScheduleEntry``, mappings ``{tokens, batch_size, seq_len}`` or
    ``[tokens, batch_size, seq_len]`` lists; sorted by ``tokens``, duplicates refused."""
    out: list[ScheduleEntry] = []
    for i, e in enumerate(schedule or ()):
        if isinstance(e, ScheduleEntry):
            out.append(e)
        elif isinstance(e, Mapping):
            unknown = set(e) - {"tokens", "batch_size", "seq_len"}
            if unknown or "tokens" not in e:
                raise ConfigError(f"schedule[{i}]: needs 'tokens' and batch_size and/or seq_len, got {sorted(e)}")
            out.append(ScheduleEntry(int(e["tokens"]), e.get("batch_size"), e.get("seq_len")))
        elif isinstance(e, (list, tuple)) and len(e) == 3:
            out.append(ScheduleEntry(int(e[0]), e[1], e[2]))
        else:
            raise ConfigError(f"schedule[{i}]: expected a mapping with tokens/batch_size/seq_len, got {e!r}")
    out.sort(key=lambda e: e.tokens)
    for a, b in zip(out, out[1:]):
        if a.tokens == b.tokens:
            raise ConfigError(f"schedule: two entries at {a.tokens} tokens")
    return out


class StepClock:
    """Global step -> (global tokens at its start, batch_size, seq_len) for one topology.

    Step 0 starts at ``tokens0``. A training step consumes ``batch_size x seq_len x
    world_size`` tokens (the phase and schedule unit; rows hold ``seq_len + 1``).
    """

    def __init__(self, *, world_size: int, batch_size: int, seq_len: int,
                 schedule: Sequence[ScheduleEntry] = (), tokens0: int = 0):
        self.world_size, self.tokens0 = int(world_size), int(tokens0)
        shape = (int(batch_size), int(seq_len))
        for e in schedule:  # entries already in force at tokens0
            if e.tokens <= tokens0:
                shape = (e.batch_size or shape[0], e.seq_len or shape[1])
        # segments: (first step, tokens at its start, batch_size, seq_len)
        self.segments: list[tuple[int, int, int, int]] = [(0, self.tokens0, *shape)]
        for e in schedule:
            if e.tokens <= tokens0:
                continue
            step0, tok0, b, s = self.segments[-1]
            step = step0 + -(-(e.tokens - tok0) // (b * s * self.world_size))
            tok = tok0 + (step - step0) * b * s * self.world_size
            shape = (e.batch_size or b, e.seq_len or s)
            if step == step0:  # two entries inside one step: the later one wins
                self.segments[-1] = (step0, tok0, *shape)
            else:
                self.segments.append((step, tok, *shape))

    def _segment(self, step: int) -> tuple[int, int, int, int]:
        seg = self.segments[0]
        for s in self.segments:
            if s[0] > step:
                break
            seg = s
        return seg

    def tokens_at(self, step: int) -> int:
        """Global token count at the start of global step ``step``."""
        step0, tok0, b, s = self._segment(step)
        return tok0 + (step - step0) * b * s * self.world_size

    def shape_at(self, step: int) -> tuple[int, int]:
        """(batch_size, seq_len) of global step ``step``."""
        _, _, b, s = self._segment(step)
        return b, s

    def first_step_at(self, tokens: int) -> int:
        """The first global step starting at or after ``tokens``."""
        seg = self.segments[0]
        for s in self.segments:
            if s[1] > tokens:
                break
            seg = s
        step0, tok0, b, s = seg
        if tokens <= tok0:
            return step0
        return step0 + -(-(tokens - tok0) // (b * s * self.world_size))

    @property
    def max_shape(self) -> tuple[int, int]:
        return max(s[2] for s in self.segments), max(s[3] for s in self.segments)
