"""The report's figures (matplotlib, no pyplot) and their conversion to inline SVG or files."""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from asiarch.v1 import common_pb2

from . import summary as s

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# Text stays text (searchable, small, crisp); a fixed salt makes the element ids reproducible.
RC = {"svg.fonttype": "none", "svg.hashsalt": "asiarch", "font.size": 9}
TOP = 5


def save(fig: Figure, path: Path, fmt: str) -> None:
    from matplotlib import rc_context

    with rc_context(RC):
        fig.savefig(path, format=fmt, dpi=130, metadata={"Date": None} if fmt == "svg" else None)


def svg(fig: Figure, prefix: str) -> str:
    """The figure as an <svg> element to inline in HTML: no XML prolog, no metadata, ids made unique."""
    from matplotlib import rc_context

    buffer = io.StringIO()
    with rc_context(RC):
        fig.savefig(buffer, format="svg", metadata={"Date": None})
    text = buffer.getvalue()
    text = text[text.index("<svg") :]
    text = re.sub(r"<metadata>.*?</metadata>", "", text, flags=re.S)
    # Several figures in one page: matplotlib's ids (clip paths, markers) would collide between them.
    for old in set(re.findall(r'\bid="([^"]+)"', text)):
        new = f"{prefix}-{old}"
        text = text.replace(f'id="{old}"', f'id="{new}"').replace(f"#{old})", f"#{new})")
        text = text.replace(f'href="#{old}"', f'href="#{new}"')
    return text


def _empty(ax: Any, message: str) -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])


def fitness_over_cycles(experiments: Sequence[common_pb2.Experiment]) -> Figure:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 4), layout="constrained")
    ax = fig.add_subplot()
    ax.set_title("Fitness over cycles", loc="left")
    done = [e for e in experiments if e.status == s.SUCCEEDED]
    if not done:
        _empty(ax, "no succeeded experiments yet")
        return fig
    for label, group, style in (
        ("candidate", [e for e in done if not e.is_baseline], {"color": "#2c7fb8", "marker": "o"}),
        ("baseline", [e for e in done if e.is_baseline], {"color": "#636363", "marker": "s"}),
    ):
        if group:
            ax.scatter(
                [e.cycle for e in group], [e.fitness.total for e in group], label=label, alpha=0.8, **style
            )
    selectable = sorted((e for e in done if not e.proposal.reference_only), key=lambda e: e.cycle)
    if selectable:
        cycles = sorted({e.cycle for e in selectable})
        best, curve = float("-inf"), []
        for cycle in cycles:
            best = max(best, *(e.fitness.total for e in selectable if e.cycle == cycle))
            curve.append(best)
        ax.step(cycles, curve, where="post", color="#d95f0e", lw=2, label="best so far")
    from matplotlib.ticker import MaxNLocator

    # Cycles are whole numbers: a tick at 0.5 reads as a cycle that never happened.
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("cycle (0 = baselines)")
    ax.set_ylabel("fitness (total)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return fig


def loss_curves(top: Sequence[common_pb2.Experiment]) -> Figure:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 4), layout="constrained")
    ax = fig.add_subplot()
    ax.set_title(
        f"Loss curves of the top {len(top)} candidates (solid: train, dashed: validation)", loc="left"
    )
    drawn = False
    for i, e in enumerate(top):
        curve = e.evaluation.metrics.loss_curve
        if not curve:
            continue
        color = f"C{i}"
        ax.plot([p.step for p in curve], [p.train_loss for p in curve], color=color, lw=1.4, label=e.name)
        val = [p for p in curve if p.HasField("val_loss")]
        if val:
            ax.plot(
                [p.step for p in val], [p.val_loss for p in val], color=color, ls="--", marker=".", lw=1.2
            )
        drawn = True
    if not drawn:
        _empty(ax, "no loss curves recorded")
        return fig
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("cross-entropy (nats/byte)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def mqar_bars(top: Sequence[common_pb2.Experiment], baselines: Sequence[common_pb2.Experiment]) -> Figure:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 4), layout="constrained")
    ax = fig.add_subplot()
    ax.set_title("MQAR accuracy per setting: top candidates vs baselines", loc="left")
    groups = [*top, *baselines]
    settings = sorted({b.name for e in groups for b in s.mqar_scores(e)}, key=s.setting_key)
    if not settings:
        _empty(ax, "no MQAR results recorded")
        return fig
    width = 0.8 / len(groups)
    for i, e in enumerate(groups):
        scores = {b.name: b.score for b in s.mqar_scores(e)}
        xs = [j + (i - (len(groups) - 1) / 2) * width for j in range(len(settings))]
        style = {"hatch": "//", "edgecolor": "white"} if e.is_baseline else {}
        label = f"{e.name} (baseline)" if e.is_baseline else e.name
        ax.bar(xs, [scores.get(n, 0.0) for n in settings], width=width, label=label, color=f"C{i}", **style)
    ax.set_xticks(range(len(settings)), [n.removeprefix("mqar/") for n in settings])
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, ncols=2)
    return fig
