"""Terminal output of `leaderboard` and `show` (rich)."""

from __future__ import annotations

import os
import sys
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.markup import escape
from rich.panel import Panel
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text

from asiarch.v1 import common_pb2

from . import summary as s

BREAKTHROUGH = s.BREAKTHROUGH
ANALYSIS_PARTS = (
    ("design_evaluation", "Design evaluation"),
    ("results_analysis", "Results analysis"),
    ("expectation_vs_reality", "Expectation vs reality"),
    ("theoretical_explanation", "Theoretical explanation"),
    ("synthesis", "Synthesis"),
)


def console() -> Console:
    # Piped output (a file, `less`, a test) would otherwise be cut to 80 columns and wrap every row.
    width = None if sys.stdout.isatty() else int(os.environ.get("COLUMNS", "160"))
    return Console(width=width, highlight=False)


def leaderboard_table(rows: list[dict[str, Any]], title: str) -> Table:
    table = Table(title=title, title_justify="left", header_style="bold")
    # The id column is what `show` and `export` take; it is never cut (a shortened id is useless).
    for header, justify in (
        ("#", "right"),
        ("id", "left"),
        ("name", "left"),
        ("fitness", "right"),
        ("loss", "right"),
        ("bench", "right"),
        ("judge", "right"),
        ("val_loss", "right"),
        ("MQAR", "right"),
        ("layer params", "right"),
        ("parent", "left"),
        ("status", "left"),
        ("confirmation (val_loss over seeds)", "left"),
    ):
        # Numbers never shrink (an ellipsis in a number hides it); long evolved names and parents
        # are the columns that give way, with an ellipsis, on a narrow console.
        wide = header in ("name", "parent")
        table.add_column(
            header,
            justify=justify,  # type: ignore[arg-type]
            no_wrap=True,
            overflow="ellipsis" if wide else "fold",
            max_width=40 if wide else None,
            min_width=12 if wide else max(len(header), 5),
        )
    for row in rows:
        tags = [t for t, on in (("baseline", row["is_baseline"]), ("reference", row["reference_only"])) if on]
        name = Text(row["name"], style="bold" if row["rank"] == 1 else "")
        if tags:
            name.append(f" [{', '.join(tags)}]", style="dim")
        table.add_row(
            str(row["rank"]),
            Text(row["short_id"], style="cyan"),
            name,
            f"{row['fitness']:.3f}",
            f"{row['loss_score']:.2f}",
            f"{row['benchmark_score']:.2f}",
            f"{row['judge_score']:.2f}",
            s.number(row["val_loss"], 4),
            s.number(row["mqar_mean"]),
            s.human_count(row["layer_parameters"]),
            escape(row["parent_name"] or "-"),
            Text(row["status"], style="red" if row["status"] == "failed" else ""),
            Text(row["confirmation"], style="yellow" if row["breakthrough"] else "dim"),
        )
    return table


def _key_values(pairs: list[tuple[str, str]]) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    for key, value in pairs:
        table.add_row(key, Text(value))
    return table


def _metrics(e: common_pb2.Experiment) -> RenderableType:
    m = e.evaluation.metrics
    pairs = [
        ("val loss", s.number(s.optional(m, "val_loss"), 4) + " nats/byte"),
        ("bits per byte", s.number(s.optional(m, "bits_per_byte"), 4)),
        ("train loss", s.number(s.optional(m, "train_loss"), 4)),
        ("tokens/s", s.human_count(s.optional(m, "tokens_per_second"))),
        (
            "parameters",
            f"{s.human_count(s.optional(m, 'parameters'))} "
            f"(layers {s.human_count(s.optional(m, 'layer_parameters'))})",
        ),
        ("peak memory", s.human_bytes(s.optional(m, "peak_memory_bytes"))),
        ("training", f"{m.steps} steps in {m.train_seconds:.1f} s on {e.evaluation.device or '?'}"),
    ]
    for b in sorted(s.mqar_scores(e), key=lambda b: s.setting_key(b.name)):
        pairs.append((b.name, f"{b.score:.3f}"))
    others = [b for b in m.benchmarks if b not in s.mqar_scores(e)]
    pairs += [(b.name, f"{b.score:.3f}") for b in others]
    return _key_values(pairs)


def _checks(e: common_pb2.Experiment) -> RenderableType:
    table = Table(show_edge=False, header_style="bold")
    for header in ("check", "stage", "result", "message"):
        table.add_column(header, overflow="fold")
    for c in e.evaluation.checks:
        where = f" (line {c.line})" if c.line else ""
        stage = s.enum_label(common_pb2.EvaluationStage, c.stage, "EVALUATION_STAGE_")
        result = Text("passed", style="green") if c.passed else Text("FAILED", style="bold red")
        table.add_row(c.name, stage, result, Text(c.message + where))
    return table


def _repairs(e: common_pb2.Experiment) -> RenderableType:
    table = Table(show_edge=False, header_style="bold")
    for header in ("#", "failed stage", "error", "change", "by", "result"):
        table.add_column(header, overflow="fold")
    for r in e.evaluation.repairs:
        stage = s.enum_label(common_pb2.EvaluationStage, r.failed_stage, "EVALUATION_STAGE_")
        result = Text("fixed", style="green") if r.succeeded else Text("still failing", style="red")
        table.add_row(str(r.attempt), stage, Text(r.error), Text(r.summary), Text(r.repaired_by), result)
    return table


def _fitness(e: common_pb2.Experiment) -> RenderableType:
    f, j = e.fitness, e.fitness.judge
    pairs = [
        ("total", f"{f.total:.3f} / 3"),
        ("parts", f"loss {f.loss_score:.3f}  benchmark {f.benchmark_score:.3f}  judge {f.judge_score:.3f}"),
        ("novelty", f"{f.novelty:.3f}"),
        (
            "baseline",
            f"{f.baseline_id or '-'} (loss {f.baseline_loss:.4f}, benchmark {f.baseline_benchmark:.3f})",
        ),
        (
            "judge",
            f"performance {j.performance:g}, innovation {j.innovation:g}, complexity {j.complexity:g}"
            f" ({j.judged_by or '?'})",
        ),
        ("rationale", j.rationale or "-"),
    ]
    return _key_values(pairs)


def _comparisons(e: common_pb2.Experiment) -> RenderableType:
    table = Table(show_edge=False, header_style="bold")
    for header in ("relation", "experiment", "metric", "this", "other", "delta", ""):
        table.add_column(header, justify="right" if header in ("this", "other", "delta") else "left")
    for c in e.analysis.comparisons:
        relation = s.enum_label(common_pb2.Relation, c.relation, "RELATION_")
        for i, d in enumerate(c.deltas):
            mark = (
                Text("same", style="dim")
                if d.delta == 0
                else Text("better", style="green")
                if d.improved
                else Text("worse", style="red")
            )
            label = (relation, Text(c.name or c.experiment_id)) if i == 0 else ("", Text(""))
            table.add_row(*label, d.metric, f"{d.value:.4g}", f"{d.other_value:.4g}", f"{d.delta:+.4g}", mark)
    return table


def show_renderables(e: common_pb2.Experiment, names: dict[str, str]) -> list[RenderableType]:
    """Everything `asiarch show` prints about one experiment, top to bottom."""
    source = s.layer_source(e)
    parents = ", ".join(names.get(p, p) + (f" ({p})" if names.get(p, p) != p else "") for p in e.parent_ids)
    flags = [
        f for f, on in (("baseline", e.is_baseline), ("reference only", e.proposal.reference_only)) if on
    ]
    origin = s.enum_label(common_pb2.ProposalOrigin, e.proposal.origin, "PROPOSAL_ORIGIN_")
    head = [
        ("id", e.id),
        ("run", e.run_id),
        ("status", s.status_name(e.status) + (f" [{', '.join(flags)}]" if flags else "")),
        ("cycle", str(e.cycle)),
        ("parents", parents or "none"),
        ("origin", f"{origin} ({e.proposal.generator or '?'})"),
    ]
    if e.status == s.FAILED or e.evaluation.failure_reason:
        stage = s.enum_label(common_pb2.EvaluationStage, e.evaluation.failed_stage, "EVALUATION_STAGE_")
        head.append(("failure", f"{stage}: {e.evaluation.failure_reason}"))
    # The engineer always records the source it evaluated; it differs from the proposal only after repairs.
    repairs = len(e.evaluation.repairs)
    repaired = (
        f" (after {repairs} repair{'s' if repairs > 1 else ''})"
        if repairs and e.evaluation.final_source.module_source
        else ""
    )
    parts: list[RenderableType] = [
        Panel(_key_values(head), title=Text(e.name, style="bold"), title_align="left"),
        Panel(Text(e.proposal.motivation or "(none)"), title="Motivation", title_align="left"),
        Panel(
            Syntax(source.module_source, "python", line_numbers=True, word_wrap=True),
            title=f"Code: class {source.class_name or 'DeltaNet'}{repaired}",
            title_align="left",
        ),
        Panel(_metrics(e), title="Metrics", title_align="left"),
    ]
    if e.evaluation.checks:
        parts.append(Panel(_checks(e), title="Checks", title_align="left"))
    if e.evaluation.repairs:
        parts.append(Panel(_repairs(e), title="Repair attempts", title_align="left"))
    parts.append(Panel(_fitness(e), title="Fitness", title_align="left"))
    a = e.analysis
    analysis = [
        Group(Text(label, style="bold underline"), Text(getattr(a, f) or "-"), Text(""))
        for f, label in ANALYSIS_PARTS
    ]
    analysis.append(Text(f"written by {a.written_by or '?'}", style="dim"))
    parts.append(Panel(Group(*analysis), title="Analysis", title_align="left"))
    if a.comparisons:
        parts.append(Panel(_comparisons(e), title="Comparisons", title_align="left"))
    verdict = f"{BREAKTHROUGH} BREAKTHROUGH (confirmed)" if a.breakthrough else "not a breakthrough"
    parts.append(
        Panel(Text(f"{verdict}: {a.breakthrough_reason or '-'}"), title="Breakthrough", title_align="left")
    )
    return parts
