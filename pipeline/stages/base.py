"""The stage contract every curation step follows.

A *batch stage* maps one ``pyarrow.Table`` batch to a :class:`StageResult`:
the rows it keeps (possibly with new signal columns) and the rows it rejects,
each rejected row carrying the stage name and a reason. Stages are pure over a
batch, so tests call them without Ray; the Ray runner wraps them in
``map_batches`` (actor pools for stateful stages such as model inference).

Stages register themselves by name with :func:`register_stage`, which is how a
``stages:`` list in a curate config is validated before any work starts.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict

REJECT_STAGE = "reject_stage"
REJECT_REASON = "reject_reason"


class StageConfig(BaseModel):
    """Base of every stage's config: unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid")


@dataclass
class StageResult:
    """What a batch stage returns: kept rows and rejected rows (with stage and reason)."""

    kept: pa.Table
    rejected: pa.Table


class Stage(ABC):
    """A batch stage. Subclasses set ``name`` and ``Config`` and implement ``process``.

    Args:
        config: an instance of the subclass's ``Config`` model.
    """

    name: ClassVar[str]
    Config: ClassVar[type[StageConfig]] = StageConfig

    def __init__(self, config: StageConfig | None = None):
        self.config = config if config is not None else self.Config()

    @abstractmethod
    def process(self, table: pa.Table) -> StageResult:
        """Split one batch into kept and rejected rows."""

    def __call__(self, table: pa.Table) -> StageResult:
        return self.process(table)

    def ray_map_kwargs(self) -> dict[str, Any]:
        """Extra ``Dataset.map_batches`` arguments (batch_size, concurrency, num_gpus...)."""
        return {}

    def split(self, table: pa.Table, reasons: Sequence[str | None]) -> StageResult:
        """Partition ``table`` by per-row reasons: ``None`` keeps a row, a string rejects it."""
        if len(reasons) != table.num_rows:
            raise ValueError(f"stage {self.name}: {len(reasons)} reasons for {table.num_rows} rows")
        keep = pa.array([r is None for r in reasons], type=pa.bool_())
        kept = table.filter(keep)
        rejected = table.filter(pc.invert(keep))
        rejected_reasons = [r for r in reasons if r is not None]
        rejected = rejected.append_column(REJECT_STAGE, pa.array([self.name] * len(rejected_reasons), pa.string()))
        rejected = rejected.append_column(REJECT_REASON, pa.array(rejected_reasons, pa.string()))
        return StageResult(kept=kept, rejected=rejected)


STAGES: dict[str, type[Stage]] = {}


def register_stage(cls: type[Stage]) -> type[Stage]:
    """Class decorator: make a stage available to configs under ``cls.name``."""
    if cls.name in STAGES and STAGES[cls.name] is not cls:
        raise ValueError(f"stage name {cls.name!r} registered twice")
    STAGES[cls.name] = cls
    return cls
