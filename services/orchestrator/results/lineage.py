"""The evolution tree of a run: a layered layout computed here, drawn with matplotlib.

Edges follow each experiment's primary parent (parent_ids[0]); further parents (crossovers)
are drawn as faint dashed lines. Experiments whose primary parent is not in the run
(baselines, or designs seeded from another run) are roots. Depth is generations from the
root; every leaf gets its own column and a parent sits above the middle of its children.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from asiarch.v1 import common_pb2

from . import summary as s

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

MAX_LABELLED = 150  # beyond this many nodes only the best ones are labelled, or labels pile up


@dataclass(frozen=True)
class Layout:
    x: dict[str, float]
    depth: dict[str, int]
    edges: list[tuple[str, str]]  # (parent, child) along primary parents
    extra_edges: list[tuple[str, str]]  # further parents
    leaves: int


def layout(experiments: Sequence[common_pb2.Experiment]) -> Layout:
    ids = {e.id for e in experiments}
    order = sorted(
        experiments, key=lambda e: (not e.is_baseline, e.cycle, e.created_at.ToNanoseconds(), e.id)
    )
    children: dict[str, list[str]] = {}
    roots: list[str] = []
    edges, extra = [], []
    for e in order:
        parent = e.parent_ids[0] if e.parent_ids else ""
        if parent in ids and parent != e.id:
            children.setdefault(parent, []).append(e.id)
            edges.append((parent, e.id))
        else:
            roots.append(e.id)
        extra += [(p, e.id) for p in e.parent_ids[1:] if p in ids]
    x: dict[str, float] = {}
    depth: dict[str, int] = {}
    column = 0
    # Iterative post-order walk: long chains of generations would overflow Python's recursion limit.
    for root in roots:
        stack: list[tuple[str, int, bool]] = [(root, 0, False)]
        while stack:
            node, level, expanded = stack.pop()
            kids = children.get(node, [])
            if node in depth and not expanded:
                continue  # a cycle in corrupt data; each node is placed once
            depth[node] = level
            if not kids:
                x[node] = column
                column += 1
            elif expanded:
                placed = [x[k] for k in kids if k in x]
                x[node] = (min(placed) + max(placed)) / 2 if placed else column
            else:
                stack.append((node, level, True))
                stack += [(k, level + 1, False) for k in reversed(kids) if k not in depth]
    return Layout(x, depth, edges, extra, max(column, 1))


def draw(experiments: Sequence[common_pb2.Experiment], title: str) -> Figure:
    """The tree as a matplotlib Figure (not pyplot: no global state, no GUI backend)."""
    from matplotlib.figure import Figure

    tree = layout(experiments)
    levels = max(tree.depth.values(), default=0) + 1
    width = min(max(7.0, 1.15 * tree.leaves + 2.5), 80.0)
    height = min(max(4.0, 1.25 * levels + 1.5), 40.0)
    fig = Figure(figsize=(width, height), layout="constrained")
    ax = fig.add_subplot()
    ax.set_title(title, loc="left")
    if not experiments:
        ax.text(0.5, 0.5, "no experiments recorded yet", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return fig
    _edges(ax, tree)
    colours = _colours(experiments)
    _nodes(ax, tree, experiments, colours)
    _labels(ax, tree, experiments)
    _key(fig, ax, tree, colours)
    ax.set_xlim(-0.8, tree.leaves - 0.2)
    ax.set_ylim(levels - 0.35, -0.6)  # roots on top
    ax.set_axis_off()
    return fig


def _edges(ax: Axes, tree: Layout) -> None:
    for segments, style in (
        (tree.edges, {"color": "0.55", "lw": 1.2}),
        (tree.extra_edges, {"color": "0.75", "lw": 0.8, "ls": "--"}),
    ):
        for parent, child in segments:
            ax.plot(
                [tree.x[parent], tree.x[child]], [tree.depth[parent], tree.depth[child]], zorder=1, **style
            )


def _colours(experiments: Sequence[common_pb2.Experiment]) -> dict[str, Any]:
    """Fitness -> colour: viridis over the succeeded experiments' range (`cmap` and `norm` for matplotlib)."""
    from matplotlib import colormaps
    from matplotlib.colors import Normalize

    totals = [e.fitness.total for e in experiments if e.status == s.SUCCEEDED] or [0.0]
    low, high = min(totals), max(totals)
    return {
        "cmap": colormaps["viridis"],
        "norm": Normalize(vmin=low, vmax=high if high > low else low + 1e-6),
    }


def _marker(e: common_pb2.Experiment) -> str:
    return "D" if e.proposal.reference_only else "s" if e.is_baseline else "o"


def _scatter(ax: Axes, tree: Layout, group: list[common_pb2.Experiment], **style: Any) -> None:
    if group:
        ax.scatter([tree.x[e.id] for e in group], [tree.depth[e.id] for e in group], zorder=3, **style)


def _nodes(
    ax: Axes, tree: Layout, experiments: Sequence[common_pb2.Experiment], colours: dict[str, Any]
) -> None:
    """Succeeded designs coloured by fitness (shape: candidate, baseline, reference); failed; the rest."""
    succeeded = [e for e in experiments if e.status == s.SUCCEEDED]
    for shape in ("o", "s", "D"):
        group = [e for e in succeeded if _marker(e) == shape]
        totals = [e.fitness.total for e in group]
        linewidths = 1.4 if shape != "o" else 0.6
        _scatter(
            ax,
            tree,
            group,
            c=totals,
            **colours,
            marker=shape,
            s=170,
            edgecolors="black",
            linewidths=linewidths,
        )
    failed = [e for e in experiments if e.status == s.FAILED]
    _scatter(ax, tree, failed, marker="X", s=150, color="0.85", edgecolors="#c0392b", linewidths=1.2)
    other = [e for e in experiments if e.status not in (s.SUCCEEDED, s.FAILED)]
    _scatter(ax, tree, other, marker="o", s=150, facecolors="white", edgecolors="0.5", linestyle="--")


def _labels(ax: Axes, tree: Layout, experiments: Sequence[common_pb2.Experiment]) -> None:
    """Name and fitness (or status) under each node; only the best MAX_LABELLED in a large run."""
    labelled = {e.id for e in experiments}
    if len(experiments) > MAX_LABELLED:
        labelled = {e.id for e in s.ranked(experiments)[:MAX_LABELLED]}
    for e in experiments:
        if e.id not in labelled:
            continue
        detail = f"{e.fitness.total:.2f}" if e.status == s.SUCCEEDED else s.status_name(e.status)
        ax.annotate(
            f"{e.name}\n{detail}",
            (tree.x[e.id], tree.depth[e.id]),
            xytext=(0, -12),
            textcoords="offset points",
            ha="center",
            va="top",
            fontsize=7,
            color="#c0392b" if e.status == s.FAILED else "black",
            zorder=4,
        )


def _key(fig: Figure, ax: Axes, tree: Layout, colours: dict[str, Any]) -> None:
    """The fitness colour bar and the legend of shapes (and of crossover edges when there are any)."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.lines import Line2D

    fig.colorbar(ScalarMappable(**colours), ax=ax, label="fitness (total)", shrink=0.8)
    handles = [
        Line2D([], [], marker="s", ls="", color="0.6", markeredgecolor="black", label="baseline"),
        Line2D([], [], marker="D", ls="", color="0.6", markeredgecolor="black", label="reference only"),
        Line2D([], [], marker="o", ls="", color="0.6", markeredgecolor="black", label="candidate"),
        Line2D([], [], marker="X", ls="", color="0.85", markeredgecolor="#c0392b", label="failed"),
    ]
    if tree.extra_edges:
        handles.append(Line2D([], [], color="0.75", lw=0.8, ls="--", label="second parent (crossover)"))
    ax.legend(
        handles=handles,
        loc="upper left",
        bbox_to_anchor=(0, -0.02),
        ncols=len(handles),
        fontsize=8,
        frameon=False,
    )
