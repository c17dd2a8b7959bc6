"""Achieved versus target shares of a mixture, as a table and a PNG.

``achieved`` maps phase name -> source name -> tokens actually emitted (from a
loader's ``stats()``, a saved state, or a dry run that streams without a
trainer). The deviation reported is in percentage points of the phase's tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .mixture import Mixture


@dataclass
class ShareRow:
    phase: str
    source: str
    target_share: float
    achieved_share: float
    achieved_tokens: int

    @property
    def deviation_pp(self) -> float:
        return 100.0 * (self.achieved_share - self.target_share)


def compare_shares(mixture: Mixture, achieved: dict[str, dict[str, int]]) -> list[ShareRow]:
    """One row per (phase, source) with target and achieved shares; phases never reached are skipped."""
    rows: list[ShareRow] = []
    for phase in mixture.phases:
        got = achieved.get(phase.name or "", {})
        total = sum(got.values())
        if total == 0:
            continue
        targets = phase.shares()
        for source in sorted(set(targets) | set(got)):
            tokens = int(got.get(source, 0))
            rows.append(ShareRow(phase.name or "", source, targets.get(source, 0.0), tokens / total, tokens))
    return rows


def max_deviation_pp(rows: list[ShareRow]) -> float:
    return max((abs(r.deviation_pp) for r in rows), default=0.0)


def plot_shares(rows: list[ShareRow], out_png: str | Path, title: str = "Mixture: target vs achieved") -> Path:
    """Grouped bars per phase: target (hatched) next to achieved share for each source."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    phases = list(dict.fromkeys(r.phase for r in rows))
    sources = list(dict.fromkeys(r.source for r in rows))
    colors = {s: plt.get_cmap("tab10")(i % 10) for i, s in enumerate(sources)}
    fig, axes = plt.subplots(1, max(1, len(phases)), figsize=(4 + 3 * len(phases), 4), squeeze=False, sharey=True)
    for ax, phase in zip(axes[0], phases):
        prow = [r for r in rows if r.phase == phase]
        for i, r in enumerate(prow):
            ax.bar(i - 0.2, r.target_share, 0.4, color=colors[r.source], alpha=0.35, hatch="//", edgecolor="grey")
            ax.bar(i + 0.2, r.achieved_share, 0.4, color=colors[r.source])
        ax.set_xticks(range(len(prow)), [r.source for r in prow], rotation=30, ha="right")
        ax.set_title(phase)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel("token share (hatched: target, solid: achieved)")
    fig.suptitle(title)
    fig.tight_layout()
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return out_png
