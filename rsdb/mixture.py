"""Phase mixtures: which sources feed training, in what shares, for how many tokens.

A mixture file (YAML) names sources (token-shard directories or Megatron
prefixes) and an ordered list of phases, each with a token budget and a weight
per source. Trinity Large ran three phases of 10T, 4T and 3T tokens, shifting
toward code, math/STEM and higher-quality data in the later ones:

.. code-block:: yaml

    sources:
      web:  {path: s3://bucket/tokens/web}
      code: {path: tokens/code}
    phases:
      - {name: phase1, tokens: 10T, weights: {web: 0.8, code: 0.2}}
      - {name: phase2, tokens: 4T,  weights: {web: 0.6, code: 0.4}}
    max_epochs: 8        # refuse a plan that repeats any source more often

Planning reads only each source's ``manifest.json`` (token counts), never the
shards, so a trillion-token plan is checked in milliseconds. Epochs are counted
cumulatively: a source keeps one shuffled stream across phases, so phase 2
continues where phase 1 stopped rather than starting the source over.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from common.config import validation_message

from .errors import ConfigError

_SUFFIX = {"": 1, "K": 10**3, "M": 10**6, "B": 10**9, "G": 10**9, "T": 10**12, "P": 10**15}
_TOKENS_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([KMBGTP]?)\s*$", re.IGNORECASE)


def parse_tokens(value: int | float | str) -> int:
    """Parse a token count such as ``10T``, ``2.5B``, ``1_000_000`` or ``4e12``.

    >>> parse_tokens("10T"), parse_tokens("2.5M"), parse_tokens(4096)
    (10000000000000, 2500000, 4096)
    """
    if isinstance(value, bool):
        raise ValueError("a token count must be a number or a string like '10T'")
    if isinstance(value, (int, float)):
        number = float(value)
    else:
        text = str(value).replace("_", "").strip()
        match = _TOKENS_RE.match(text)
        if match:
            number = float(match.group(1)) * _SUFFIX[match.group(2).upper()]
        else:
            try:
                number = float(text)
            except ValueError:
                raise ValueError(f"cannot read {value!r} as a token count (examples: 4096, 2.5B, 10T)") from None
    if number <= 0 or number != number:
        raise ValueError(f"a token count must be positive, got {value!r}")
    return int(round(number))


def format_tokens(n: float) -> str:
    """Human-readable token count: ``10.0T``, ``512.0M``, ``900``."""
    for suffix, scale in (("P", 10**15), ("T", 10**12), ("B", 10**9), ("M", 10**6), ("K", 10**3)):
        if abs(n) >= scale:
            return f"{n / scale:.1f}{suffix}"
    return f"{n:.0f}"


class SourceSpec(BaseModel):
    """One source: where its tokens are, optionally a declared size for dry runs."""

    model_config = ConfigDict(extra="forbid")
    path: str = Field(description="token-shard directory (with manifest.json) or Megatron prefix")
    tokens: int | None = Field(default=None, description="declared token count; overrides the manifest")
    storage_options: dict[str, Any] | None = Field(
        default=None, description="fsspec options for a URI path (s3://...): key, secret, client_kwargs, ...")

    @field_validator("tokens", mode="before")
    @classmethod
    def _tokens(cls, v: Any) -> int | None:
        return None if v is None else parse_tokens(v)


class PhaseSpec(BaseModel):
    """One phase: a token budget split between sources by weight."""

    model_config = ConfigDict(extra="forbid")
    name: str | None = None
    tokens: int
    weights: dict[str, float]
    batch_size: int | None = Field(default=None, ge=1, description="batch shape from this phase's first step on")
    seq_len: int | None = Field(default=None, ge=1, description="sequence length from this phase's first step on")

    @field_validator("tokens", mode="before")
    @classmethod
    def _tokens(cls, v: Any) -> int:
        return parse_tokens(v)

    @field_validator("weights")
    @classmethod
    def _weights(cls, w: dict[str, float]) -> dict[str, float]:
        if not w:
            raise ValueError("a phase needs at least one source weight")
        for name, value in w.items():
            if value < 0:
                raise ValueError(f"weight of {name!r} is negative ({value})")
        if sum(w.values()) <= 0:
            raise ValueError("weights sum to zero")
        return w

    def shares(self) -> dict[str, float]:
        total = sum(self.weights.values())
        return {name: value / total for name, value in self.weights.items() if value > 0}


class ScheduleSpec(BaseModel):
    """A batch shape change at a global token count: ``{tokens: 5T, batch_size: 16}``."""

    model_config = ConfigDict(extra="forbid")
    tokens: int
    batch_size: int | None = Field(default=None, ge=1)
    seq_len: int | None = Field(default=None, ge=1)

    @field_validator("tokens", mode="before")
    @classmethod
    def _tokens(cls, v: Any) -> int:
        return 0 if v in (0, "0") else parse_tokens(v)

    @model_validator(mode="after")
    def _some(self) -> "ScheduleSpec":
        if self.batch_size is None and self.seq_len is None:
            raise ValueError("a schedule entry sets batch_size and/or seq_len")
        return self


class Mixture(BaseModel):
    """A validated mixture file. Load with :func:`load_mixture`."""

    model_config = ConfigDict(extra="forbid")
    name: str = "mixture"
    sources: dict[str, SourceSpec]
    phases: list[PhaseSpec]
    schedule: list[ScheduleSpec] = Field(default_factory=list, description="batch shape changes by global tokens")
    max_epochs: float = Field(default=10.0, gt=0, description="refuse plans that repeat a source more often")
    warn_epochs: float = Field(default=4.0, gt=0, description="flag heavy upsampling above this many epochs")
    normalize: bool = Field(default=False, description="weights are relative: divide them by their sum silently "
                                                       "(otherwise a phase whose weights do not sum to 1 is flagged)")

    @model_validator(mode="after")
    def _check(self) -> "Mixture":
        if not self.sources:
            raise ValueError("sources: at least one source is needed")
        if not self.phases:
            raise ValueError("phases: at least one phase is needed")
        from .loader import name_phases_and_check_sources  # the loader's API applies the same rule

        name_phases_and_check_sources(self.phases, list(self.sources))
        names = [p.name for p in self.phases]
        if len(set(names)) != len(names):
            raise ValueError(f"phase names must be unique, got {names}")
        return self

    @property
    def total_tokens(self) -> int:
        return sum(p.tokens for p in self.phases)

    def phase_boundaries(self) -> list[int]:
        """Cumulative token counts at which each phase ends (global, across all ranks)."""
        out, acc = [], 0
        for phase in self.phases:
            acc += phase.tokens
            out.append(acc)
        return out


def _resolve(base: Path | None, path: str) -> str:
    if "://" in path or base is None or Path(path).is_absolute():
        return path
    return str((base / path).resolve())


def load_mixture(path: str | Path) -> Mixture:
    """Read and validate a mixture YAML file (local path or fsspec URI).

    Relative source paths are resolved against the mixture file's folder.

    Raises:
        ConfigError: naming the key and the problem, before anything is read.
    """
    import fsspec

    path = str(path)
    try:
        with fsspec.open(path, "rt", encoding="utf-8") as f:
            raw = yaml.safe_load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: mixture file not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a mixture file must be a mapping with 'sources' and 'phases'")
    try:
        mixture = Mixture.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{path}: invalid mixture:\n  " + validation_message(exc, root="<root>", sep="\n  ")) from None
    base = None if "://" in path else Path(path).resolve().parent
    for spec in mixture.sources.values():
        spec.path = _resolve(base, spec.path)
    return mixture


def available_tokens(spec: SourceSpec) -> int:
    """Tokens a source holds, from its declaration or its manifest (never the shards)."""
    if spec.tokens is not None:
        return spec.tokens
    import fsspec

    path = spec.path
    if not path.endswith(".json"):
        idx = path + ".idx"
        fs, local = fsspec.core.url_to_fs(idx, **(spec.storage_options or {}))
        if fs.exists(local):
            return _megatron_tokens(path)
        path = path.rstrip("/") + "/manifest.json"
    try:
        with fsspec.open(path, "rt", encoding="utf-8", **(spec.storage_options or {})) as f:
            manifest = json.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{spec.path}: no manifest.json (and no Megatron .idx) found") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: manifest is not valid JSON: {exc}") from None
    if "num_tokens" not in manifest:
        raise ConfigError(f"{path}: manifest has no 'num_tokens'")
    return int(manifest["num_tokens"])


def _megatron_tokens(prefix: str) -> int:
    from .megatron import open_megatron

    return int(open_megatron(prefix).num_tokens)


@dataclass
class PlanRow:
    phase: str
    source: str
    share: float
    target_tokens: int
    available_tokens: int
    epochs_in_phase: float
    cumulative_epochs: float
    flag: str = ""


@dataclass
class Plan:
    """The planned consumption of every source in every phase."""

    mixture: Mixture
    rows: list[PlanRow]
    available: dict[str, int]
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    steps: list[dict[str, Any]] = field(default_factory=list)  # plan_steps(), when a topology is given

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.mixture.name,
            "total_tokens": self.mixture.total_tokens,
            "available": self.available,
            "rows": [r.__dict__ for r in self.rows],
            "problems": self.problems,
            "warnings": self.warnings,
            "steps": self.steps,
        }


def schedule_entries(mixture: Mixture) -> list[Any]:
    """The mixture's batch shape changes as loader schedule entries (phases' shapes included)."""
    from .schedule import ScheduleEntry

    out = [ScheduleEntry(e.tokens, e.batch_size, e.seq_len) for e in mixture.schedule]
    start = 0
    for p in mixture.phases:
        if p.batch_size is not None or p.seq_len is not None:
            out.append(ScheduleEntry(start, p.batch_size, p.seq_len))
        start += p.tokens
    return out


def plan_steps(mixture: Mixture, *, world_size: int, batch_size: int, seq_len: int) -> list[dict[str, Any]]:
    """Global steps of every phase for a topology, with the batch shapes the schedule sets.

    A step belongs to the phase containing the global token count at its start, and has
    the shape in force there (``rsdb.schedule.StepClock``), as the loader does.

    >>> m = Mixture.model_validate({"sources": {"a": {"path": "x", "tokens": "1B"}},
    ...     "phases": [{"tokens": 1000, "weights": {"a": 1}}, {"tokens": 1000, "weights": {"a": 1}, "batch_size": 4}]})
    >>> [(r["phase"], r["steps"], r["shapes"]) for r in plan_steps(m, world_size=1, batch_size=2, seq_len=100)]
    [('phase1', 5, [[0, 2, 100]]), ('phase2', 3, [[5, 4, 100]])]
    """
    from .schedule import StepClock, coerce_schedule

    clock = StepClock(world_size=world_size, batch_size=batch_size, seq_len=seq_len,
                      schedule=coerce_schedule(schedule_entries(mixture)))
    rows, start = [], 0
    for p in mixture.phases:
        end = start + p.tokens
        first, stop = clock.first_step_at(start), clock.first_step_at(end)
        shapes = [[first, *clock.shape_at(first)]]
        for seg in clock.segments:
            if first < seg[0] < stop:
                shapes.append([seg[0], seg[2], seg[3]])
        rows.append({"phase": p.name, "first_step": first, "steps": stop - first, "shapes": shapes,
                     "tokens": clock.tokens_at(stop) - clock.tokens_at(first)})
        start = end
    return rows


def plan_mixture(mixture: Mixture) -> Plan:
    """Check a mixture against what its sources hold.

    A plan is refused (``problems`` non-empty) when a weighted source is empty
    or would have to be repeated more than ``max_epochs`` times.

    >>> m = Mixture.model_validate({"sources": {"a": {"path": "x", "tokens": "1B"}},
    ...                             "phases": [{"tokens": "3B", "weights": {"a": 1}}]})
    >>> plan_mixture(m).rows[0].epochs_in_phase
    3.0
    """
    available = {name: available_tokens(spec) for name, spec in mixture.sources.items()}
    rows: list[PlanRow] = []
    problems: list[str] = []
    warnings: list[str] = []
    consumed = {name: 0 for name in mixture.sources}
    for phase in mixture.phases:
        shares = phase.shares()
        weight_sum = sum(phase.weights.values())
        if not mixture.normalize and abs(weight_sum - 1.0) > 1e-6:
            # 0.45 of 0.85 trains as 52.9%: say so rather than renormalise behind the user's back
            shown = ", ".join(f"{n} {phase.weights[n]:g} -> {v:.1%}" for n, v in shares.items())
            warnings.append(f"{phase.name}: weights sum to {weight_sum:.4g}, not 1, and are renormalised "
                            f"({shown}); fix them, or set normalize: true if they are meant as ratios")
        # Largest-remainder rounding so per-phase targets add up to the budget exactly.
        exact = {name: phase.tokens * share for name, share in shares.items()}
        targets = {name: int(v) for name, v in exact.items()}
        short = phase.tokens - sum(targets.values())
        for name in sorted(exact, key=lambda n: exact[n] - targets[n], reverse=True)[:short]:
            targets[name] += 1
        for name, share in shares.items():
            have = available[name]
            consumed[name] += targets[name]
            if have <= 0:
                problems.append(f"{phase.name}: source {name!r} has weight {phase.weights[name]} but holds no tokens")
                rows.append(PlanRow(phase.name, name, share, targets[name], have, float("inf"), float("inf"), "EMPTY"))
                continue
            cumulative = consumed[name] / have
            flag = ""
            if cumulative > mixture.max_epochs:
                flag = "REFUSED"
                problems.append(
                    f"{phase.name}: source {name!r} needs {cumulative:.2f} epochs by the end of this phase "
                    f"({format_tokens(consumed[name])} of {format_tokens(have)} available), above max_epochs="
                    f"{mixture.max_epochs:g}; add data, lower its weight or the phase budget"
                )
            elif cumulative > mixture.warn_epochs:
                flag = "UPSAMPLED"
                warnings.append(f"{phase.name}: source {name!r} is repeated {cumulative:.2f}x (heavy upsampling)")
            rows.append(PlanRow(phase.name, name, share, targets[name], have, targets[name] / have, cumulative, flag))
    return Plan(mixture=mixture, rows=rows, available=available, problems=problems, warnings=warnings)


def loader_from_mixture(mixture: str | Path | Mixture, *, start_phase: str | int | None = None, **kwargs: Any):
    """Build an :class:`rsdb.RSDBLoader` that follows a mixture's phases.

    Args:
        mixture: a mixture file (path or fsspec URI) or a loaded :class:`Mixture`.
        start_phase: begin at this phase (name or 0-based index) instead of the first,
            for ablations; to resume a run, restore the loader's ``state_dict`` instead.
        **kwargs: passed to :class:`rsdb.RSDBLoader` (seq_len, batch_size, rank, ...).

    The plan is checked first, so an impossible mixture fails before any data is read.
    """
    from .loader import Phase, RSDBLoader

    m = mixture if isinstance(mixture, Mixture) else load_mixture(mixture)
    plan = plan_mixture(m)
    if not plan.ok:
        raise ConfigError(f"mixture {m.name!r} is not feasible:\n  " + "\n  ".join(plan.problems))
    for w in plan.warnings:
        logging.getLogger(__name__).warning("mixture %r: %s", m.name, w)
    phases = list(m.phases)
    if start_phase is not None:
        names = [p.name for p in phases]
        if isinstance(start_phase, int):
            index = start_phase
        elif start_phase in names:
            index = names.index(start_phase)
        else:
            raise ConfigError(f"start_phase {start_phase!r} is not one of {names}")
        if not 0 <= index < len(phases):
            raise ConfigError(f"start_phase {start_phase!r} is out of range (0..{len(phases) - 1})")
        phases = phases[index:]
    used = {s for p in phases for s, w in p.weights.items() if w > 0}
    # URI paths go through the loader's shard cache (rsdb.remote), with their own options.
    sources = {name: {"path": spec.path, "storage_options": spec.storage_options} if spec.storage_options else spec.path
               for name, spec in m.sources.items() if name in used}
    if "schedule" not in kwargs:
        # entries are global token counts of the whole mixture; a later start_phase shifts them
        skipped = sum(p.tokens for p in m.phases[: len(m.phases) - len(phases)])
        shifted: dict[int, dict[str, Any]] = {}
        for e in sorted(schedule_entries(m), key=lambda e: e.tokens):
            at = shifted.setdefault(max(0, e.tokens - skipped), {"tokens": max(0, e.tokens - skipped)})
            at.update({k: v for k, v in (("batch_size", e.batch_size), ("seq_len", e.seq_len)) if v is not None})
        kwargs["schedule"] = list(shifted.values())
    return RSDBLoader(
        sources,
        phases=[Phase(tokens=p.tokens, weights={s: w for s, w in p.weights.items() if s in sources}, name=p.name)
                for p in phases],
        **kwargs,
    )
