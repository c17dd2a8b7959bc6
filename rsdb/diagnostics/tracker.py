"""Trainer-side batch-heterogeneity (BH) tracker.

A training step with gradient accumulation runs several microbatches; each has
its own mean token loss. Batch heterogeneity is

    BH = max(microbatch losses) - mean(microbatch losses)

per step. With naive sequential packing a long same-domain document fills many
consecutive sequences, so one microbatch can be much easier or harder than the
rest of its step and BH is large; RSDB keeps it small. The tracker records BH,
rolling statistics and loss spikes, and writes one JSON line per step so a
crashed run keeps its history.

The tracker takes plain floats (call ``loss.item()`` first), so it works with
any framework and never imports torch.

Spike rule: a step is a spike when its value (the step loss by default) is
above ``rolling mean + k * rolling std`` of the previous ``window`` steps
(population std, current step excluded), once at least ``min_history`` finite
steps are known. Non-finite losses are always flagged and never enter the
history.

>>> t = BHTracker()
>>> r = t.log_step([2.0, 2.5, 2.0, 3.5])
>>> round(r.bh, 3), r.loss
(1.0, 2.5)
"""

from __future__ import annotations

import json
import logging
import math
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Literal, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..errors import ConfigError, TrinityError

log = logging.getLogger(__name__)

JSONL_VERSION = 1


class RunLogError(TrinityError):
    """A tracker JSONL file is missing or malformed (names the file and line)."""


class SpikeRule(BaseModel):
    """When a step counts as a loss spike.

    Args:
        window: number of previous steps in the rolling mean/std.
        k: how many rolling standard deviations above the rolling mean is a spike.
        min_history: finite steps needed before any spike can be flagged.
        metric: the per-step value tested: ``loss`` (step loss) or ``bh``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    window: int = Field(50, ge=2)
    k: float = Field(3.0, gt=0)
    min_history: int = Field(10, ge=2)
    metric: Literal["loss", "bh"] = "loss"

    @model_validator(mode="after")
    def _history_fits_window(self) -> "SpikeRule":
        if self.min_history > self.window:
            raise ValueError(f"min_history ({self.min_history}) must be <= window ({self.window})")
        return self


@dataclass
class StepRecord:
    """One training step as the tracker saw it (a JSONL ``step`` line)."""

    step: int
    loss: float  # step loss: token-weighted mean of microbatch losses when tokens are given
    bh: float  # max - mean of microbatch losses (unweighted, as defined)
    bh_rel: float  # bh / mean microbatch loss
    loss_min: float
    loss_max: float
    loss_std: float
    n_micro: int
    micro_losses: list[float]
    rolling_mean: float | None  # of the spike metric over the previous `window` steps
    rolling_std: float | None
    rolling_bh: float  # mean BH over the last `window` steps, this one included
    zscore: float | None  # (value - rolling_mean) / rolling_std
    spike: bool
    spike_reason: str | None = None  # "rule" or "nonfinite"
    grad_norm: float | None = None
    micro_grad_norms: list[float] | None = None
    tokens: int | None = None
    lr: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["type"] = "step"
        return {k: _json_safe(v) for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "StepRecord":
        names = cls.__dataclass_fields__.keys()
        return cls(**{k: _unjson(v) for k, v in d.items() if k in names})


def _json_safe(v: Any) -> Any:
    """JSON has no NaN/inf: write them as strings so a diverged run still parses."""
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    if isinstance(v, list):
        return [_json_safe(x) for x in v]
    return v


def _unjson(v: Any) -> Any:
    if isinstance(v, str) and v in ("nan", "inf", "-inf"):
        return float(v)
    if isinstance(v, list):
        return [_unjson(x) for x in v]
    return v


def _float(v: Any) -> float:
    if isinstance(v, str):
        return float(v)  # "nan"/"inf" written by _json_safe
    return float(v)


def _floats(values: Iterable[Any], what: str) -> list[float]:
    try:
        out = [float(v) for v in values]
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what} must be numbers (call .item() on tensors): {exc}") from None
    return out


def summarize(records: Sequence[StepRecord], *, final_window: int | None = None) -> dict[str, Any]:
    """Aggregate step records: BH mean/p50/p95/max, spikes, first/final loss.

    Args:
        records: the steps, in order.
        final_window: steps averaged for ``loss_final`` (default: last 10% of
            steps, at least 1), so one noisy last step does not decide it.

    >>> recs = [BHTracker().log_step([1.0, 3.0])]
    >>> summarize(recs)["bh_mean"]
    1.0
    """
    if not records:
        return {"steps": 0}
    bh = np.array([r.bh for r in records], dtype=np.float64)
    loss = np.array([r.loss for r in records], dtype=np.float64)
    finite = np.isfinite(bh)
    n_final = final_window or max(1, len(records) // 10)
    tail = loss[-n_final:]
    tail = tail[np.isfinite(tail)]
    out: dict[str, Any] = {
        "steps": len(records),
        "bh_mean": float(bh[finite].mean()) if finite.any() else float("nan"),
        "bh_p50": float(np.percentile(bh[finite], 50)) if finite.any() else float("nan"),
        "bh_p95": float(np.percentile(bh[finite], 95)) if finite.any() else float("nan"),
        "bh_max": float(bh[finite].max()) if finite.any() else float("nan"),
        "bh_rel_mean": float(np.nanmean([r.bh_rel for r in records])),
        "loss_first": float(loss[0]),
        # std of step-to-step loss changes: how jagged the loss curve is (0 for a smooth one)
        "loss_jitter": float(np.diff(loss[np.isfinite(loss)]).std()) if np.isfinite(loss).sum() > 1 else 0.0,
        "loss_final": float(tail.mean()) if tail.size else float("nan"),
        "final_window": int(n_final),
        "n_spikes": int(sum(r.spike for r in records)),
        "spike_steps": [r.step for r in records if r.spike],
        "nonfinite_steps": int(sum(r.spike_reason == "nonfinite" for r in records)),
    }
    gn = [r.grad_norm for r in records if r.grad_norm is not None and math.isfinite(r.grad_norm)]
    if gn:
        out["grad_norm_mean"] = float(np.mean(gn))
        out["grad_norm_max"] = float(np.max(gn))
    toks = [r.tokens for r in records if r.tokens is not None]
    if toks:
        out["tokens"] = int(sum(toks))
    return out


class BHTracker:
    """Record per-microbatch losses each step; compute BH, rolling stats and spikes.

    Args:
        out: JSONL path to append to (parent dirs are created); ``None`` keeps
            records in memory only.
        rule: the spike rule (see :class:`SpikeRule`); default window 50, k 3.
        run: a name for this run, written in the JSONL header and used as the
            plot label.
        meta: free-form JSON-able facts about the run (model, packing, seed).

    Use it as a context manager, or call :meth:`close` to write the summary line.

    >>> with BHTracker(rule=SpikeRule(window=4, k=2.0, min_history=3)) as t:
    ...     for losses in ([3.0, 3.0], [2.9, 2.9], [2.8, 2.8], [2.7, 2.7], [5.0, 5.0]):
    ...         rec = t.log_step(losses)
    >>> rec.spike, t.summary()["spike_steps"]
    (True, [4])
    """

    def __init__(
        self,
        out: str | Path | None = None,
        *,
        rule: SpikeRule | dict | None = None,
        run: str = "run",
        meta: dict[str, Any] | None = None,
    ):
        try:
            self.rule = rule if isinstance(rule, SpikeRule) else SpikeRule(**(rule or {}))
        except Exception as exc:  # pydantic ValidationError names the key
            raise ConfigError(f"invalid spike rule: {exc}") from None
        self.run = run
        self.meta = dict(meta or {})
        self.records: list[StepRecord] = []
        self._history: deque[float] = deque(maxlen=self.rule.window)
        self._bh_window: deque[float] = deque(maxlen=self.rule.window)
        self._fh = None
        self.path = Path(out) if out is not None else None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "w", encoding="utf-8")
            header = {
                "type": "meta",
                "version": JSONL_VERSION,
                "run": run,
                "rule": self.rule.model_dump(),
                "meta": self.meta,
            }
            self._write(header)

    # -- recording -------------------------------------------------------------------------------
    def log_step(
        self,
        micro_losses: Sequence[float],
        *,
        step: int | None = None,
        micro_tokens: Sequence[int] | None = None,
        grad_norm: float | None = None,
        micro_grad_norms: Sequence[float] | None = None,
        lr: float | None = None,
        extra: dict[str, Any] | None = None,
    ) -> StepRecord:
        """Record one optimizer step.

        Args:
            micro_losses: mean token loss of each microbatch of the step (>= 1).
            step: step index (default: previous + 1, starting at 0).
            micro_tokens: loss tokens per microbatch; makes ``loss`` the exact
                token-weighted step loss and fills ``tokens``.
            grad_norm: total gradient norm of the step, after accumulation.
            micro_grad_norms: gradient norm of each microbatch alone, if measured.
            lr: learning rate of the step.
            extra: other JSON-able per-step values to keep.

        Returns:
            The :class:`StepRecord` (also kept in ``self.records``).
        """
        losses = _floats(micro_losses, "micro_losses")
        if not losses:
            raise ValueError("micro_losses is empty: a step needs at least one microbatch loss")
        if step is None:
            step = self.records[-1].step + 1 if self.records else 0
        arr = np.asarray(losses, dtype=np.float64)
        with np.errstate(invalid="ignore"):  # a NaN/inf loss is recorded and flagged, not warned about
            return self._record(arr, losses, step, micro_tokens, grad_norm, micro_grad_norms, lr, extra)

    def _record(self, arr, losses, step, micro_tokens, grad_norm, micro_grad_norms, lr, extra) -> StepRecord:
        mean = float(arr.mean())
        if micro_tokens is not None:
            w = np.asarray(_floats(micro_tokens, "micro_tokens"), dtype=np.float64)
            if w.shape != arr.shape:
                raise ValueError(f"micro_tokens has {w.size} entries but micro_losses has {arr.size}")
            if (w < 0).any() or w.sum() <= 0:
                raise ValueError("micro_tokens must be >= 0 with a positive sum")
            loss = float((arr * w).sum() / w.sum())
            tokens = int(w.sum())
        else:
            loss, tokens = mean, None
        bh = float(arr.max() - mean)
        value = loss if self.rule.metric == "loss" else bh

        finite = bool(np.isfinite(arr).all())
        r_mean = r_std = z = None
        spike, reason = False, None
        if len(self._history) >= 1:
            h = np.asarray(self._history, dtype=np.float64)
            r_mean, r_std = float(h.mean()), float(h.std())
        if not finite:
            spike, reason = True, "nonfinite"
        elif len(self._history) >= self.rule.min_history:
            if r_std > 0:
                z = (value - r_mean) / r_std
            spike = value > r_mean + self.rule.k * r_std
            reason = "rule" if spike else None
        if finite:
            self._history.append(value)
            self._bh_window.append(bh)

        rec = StepRecord(
            step=int(step),
            loss=loss,
            bh=bh,
            bh_rel=bh / mean if finite and mean != 0 else float("nan"),
            loss_min=float(arr.min()),
            loss_max=float(arr.max()),
            loss_std=float(arr.std()),
            n_micro=int(arr.size),
            micro_losses=losses,
            rolling_mean=r_mean,
            rolling_std=r_std,
            rolling_bh=float(np.mean(self._bh_window)) if self._bh_window else float("nan"),
            zscore=z,
            spike=bool(spike),
            spike_reason=reason,
            grad_norm=None if grad_norm is None else float(grad_norm),
            micro_grad_norms=None if micro_grad_norms is None else _floats(micro_grad_norms, "micro_grad_norms"),
            tokens=tokens,
            lr=None if lr is None else float(lr),
            extra=dict(extra or {}),
        )
        if spike:
            log.warning("%s: loss spike at step %d (%s): loss %.4f, BH %.4f", self.run, rec.step, reason, loss, bh)
        self.records.append(rec)
        self._write(rec.to_dict())
        return rec

    def summary(self, *, final_window: int | None = None) -> dict[str, Any]:
        """Aggregate of all steps so far (see :func:`summarize`)."""
        return {"run": self.run, **summarize(self.records, final_window=final_window)}

    def plot(self, out_png: str | Path, *, title: str | None = None) -> Path:
        """Render the loss/BH figure for this run (see :func:`rsdb.diagnostics.plots.plot_runs`)."""
        from .plots import plot_runs

        return plot_runs({self.run: self.records}, out_png, title=title)

    # -- output ----------------------------------------------------------------------------------
    def _write(self, obj: dict[str, Any]) -> None:
        if self._fh is not None:
            self._fh.write(json.dumps(obj) + "\n")
            self._fh.flush()

    def close(self) -> dict[str, Any]:
        """Write the summary line (if writing JSONL), close the file, return the summary."""
        s = self.summary()
        if self._fh is not None:
            self._write({"type": "summary", **s})
            self._fh.close()
            self._fh = None
        return s

    def __enter__(self) -> "BHTracker":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass
class RunLog:
    """A tracker JSONL file read back."""

    path: Path
    run: str
    meta: dict[str, Any]
    rule: dict[str, Any]
    records: list[StepRecord]
    summary: dict[str, Any]


def read_run(path: str | Path) -> RunLog:
    """Read a tracker JSONL file; the summary is recomputed if the run did not finish.

    Raises:
        RunLogError: missing file, a line that is not JSON, or a step line
            without ``step``/``micro_losses``; the message names file and line.
    """
    path = Path(path)
    if not path.is_file():
        raise RunLogError(f"{path}: no such run log")
    meta: dict[str, Any] = {}
    records: list[StepRecord] = []
    summary: dict[str, Any] | None = None
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise RunLogError(f"{path}:{lineno}: not JSON ({exc.msg})") from None
            kind = obj.get("type") if isinstance(obj, dict) else None
            if kind == "meta":
                meta = obj
            elif kind == "step":
                try:
                    rec = StepRecord.from_dict(obj)
                    rec.loss, rec.bh = _float(rec.loss), _float(rec.bh)
                    rec.micro_losses = [_float(x) for x in rec.micro_losses]
                except (TypeError, ValueError) as exc:
                    raise RunLogError(f"{path}:{lineno}: bad step line ({exc})") from None
                records.append(rec)
            elif kind == "summary":
                summary = {k: v for k, v in obj.items() if k != "type"}
            else:
                raise RunLogError(f"{path}:{lineno}: unknown line type {kind!r} (expected meta/step/summary)")
    run = meta.get("run") or path.stem
    if summary is None:
        summary = {"run": run, **summarize(records)}
    return RunLog(path=path, run=run, meta=meta.get("meta", {}), rule=meta.get("rule", {}), records=records,
                  summary=summary)
