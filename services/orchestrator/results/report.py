"""`asiarch report`: one self-contained HTML page (inline CSS and SVG; no scripts, no external URLs).

The page is the Jinja2 template templates/report.html (one design: templates/design.html), rendered
with autoescape on: every string that came from a user, the researcher or an LLM is HTML-escaped by
the template engine. Only the SVGs are inlined as they are (`| safe` in report.html); they come
from matplotlib, which escapes the text it writes. This module gathers what the templates show;
the templates decide how it looks.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import jinja2

from asiarch.v1 import common_pb2

from . import lineage, plots
from . import summary as s
from .fetch import RunData

_TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("asiarch.orchestrator.results", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)


def _summary(data: RunData) -> dict[str, Any]:
    meta = data.info.metadata
    counts = s.counts(data.experiments)
    best = s.best(data.experiments)
    confirmations = s.confirmation_counts(data.experiments)
    planned = meta.get("cycles_planned")
    cycles = f"{meta.get('cycles_done', '?')}" + (f" of {planned}" if planned else "")
    cards = [
        ("run", data.info.run_id),
        ("state", str(meta.get("state", "unknown"))),
        ("cycles", cycles),
        ("experiments", str(len(data.experiments))),
        *((f"{name}", str(n)) for name, n in sorted(counts.items())),
        ("baselines", str(sum(e.is_baseline for e in data.experiments))),
        ("confirmed", f"{confirmations['confirmed']} of {confirmations['tested']} tested"),
        ("best (confirmed)", f"{best.name} ({best.fitness.total:.3f})" if best else "none confirmed"),
        ("started", str(meta.get("started_at", "-"))),
        ("updated", str(meta.get("updated_at", "-"))),
    ]
    options = meta.get("options")
    return {
        "cards": cards,
        "options": json.dumps(options, sort_keys=True) if options else "",
        "message": meta.get("message") or "",
        "verdict": s.verdict(data.experiments),
    }


def _numbers(e: common_pb2.Experiment) -> list[tuple[str, str]]:
    f, m = e.fitness, e.evaluation.metrics
    return [
        ("fitness (total)", f"{f.total:.3f}"),
        ("loss score", f"{f.loss_score:.3f}"),
        ("benchmark score", f"{f.benchmark_score:.3f}"),
        ("judge score", f"{f.judge_score:.3f}"),
        ("novelty", f"{f.novelty:.3f}"),
        (
            "noise floor",
            f"sd {f.loss_noise_sd:.4f} loss, {f.benchmark_noise_sd:.4f} MQAR ({f.noise_floor or '?'})",
        ),
        ("confirmation", s.confirmation_cell(e) or "not tested"),
        ("val loss", s.number(s.optional(m, "val_loss"), 4)),
        ("mean MQAR accuracy", s.number(s.mean_mqar(e))),
        ("layer parameters", s.human_count(s.optional(m, "layer_parameters"))),
        ("tokens/s", s.human_count(s.optional(m, "tokens_per_second"))),
    ]


def _design(rank: int, e: common_pb2.Experiment, names: dict[str, str]) -> dict[str, Any]:
    parent = e.parent_ids[0] if e.parent_ids else ""
    texts = [
        ("Motivation", e.proposal.motivation),
        ("Results", e.analysis.results_analysis),
        ("Synthesis", e.analysis.synthesis),
    ]
    return {
        "rank": rank,
        "id": e.id,
        "name": e.name,
        "confirmed": e.confirmation.confirmed,
        "cycle": e.cycle,
        "parent": names.get(parent, parent) or "-",
        "judged_by": e.fitness.judge.judged_by or "?",
        "numbers": _numbers(e),
        "texts": [(heading, text or "-") for heading, text in texts],
        "reason": e.analysis.breakthrough_reason,
        "source": s.layer_source(e).module_source,
    }


def _figures(experiments: list[common_pb2.Experiment], top: list[common_pb2.Experiment]) -> list[dict]:
    # Baselines that scored, reference designs included: they show what is reachable.
    baselines = [
        e for e in s.ranked(experiments, include_all=True) if e.is_baseline and e.status == s.SUCCEEDED
    ]
    figures = [
        (
            plots.fitness_over_cycles(experiments),
            "Every succeeded experiment's fitness by the cycle that produced it, "
            "with the best selectable fitness so far.",
            False,
        ),
        (plots.loss_curves(top), "Training and validation loss of the top candidates.", False),
        (
            plots.mqar_bars(top[:4], baselines[:4]),
            "Multi-query associative recall accuracy per setting (sequence length, key-value pairs).",
            False,
        ),
        (
            lineage.draw(experiments, "Evolution tree"),
            "Edges from each design's primary parent; colour is fitness; "
            "squares are baselines, diamonds references, crosses failed evaluations.",
            True,
        ),
    ]
    return [
        {"svg": plots.svg(fig, f"fig{i}"), "caption": caption, "wide": wide}
        for i, (fig, caption, wide) in enumerate(figures)
    ]


def render(data: RunData, generated_at: dt.datetime | None = None) -> str:
    """The whole page."""
    top = s.candidates(data.experiments)[: plots.TOP]
    return _TEMPLATES.get_template("report.html").render(
        title=f"asiarch run {data.info.run_id}",
        generated_at=(generated_at or dt.datetime.now(dt.UTC)).strftime("%Y-%m-%d %H:%M UTC"),
        summary=_summary(data),
        figures=_figures(data.experiments, top),
        designs=[_design(i, e, data.names) for i, e in enumerate(top, 1)],
    )


def write(data: RunData, out: Path) -> Path:
    """Render the report to `out` atomically: a browser reloading the page never sees half a file."""
    out.parent.mkdir(parents=True, exist_ok=True)
    temporary = out.with_name(f".{out.name}.tmp")
    temporary.write_text(render(data), encoding="utf-8")
    temporary.replace(out)
    return out
