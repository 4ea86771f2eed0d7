"""`asiarch report`: one self-contained HTML page (inline CSS and SVG; no scripts, no external URLs).

Every string that came from a user, the researcher or an LLM goes through `esc`; the SVGs come
from matplotlib, which escapes the text it writes.
"""

from __future__ import annotations

import datetime as dt
import html
import json
from pathlib import Path
from typing import Any

from asiarch.v1 import common_pb2

from . import lineage, plots
from . import summary as s
from .fetch import RunData

CSS = """
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0; color: #1d2327;
       background: #f6f7f7; }
main { max-width: 1100px; margin: 0 auto; padding: 24px; }
h1 { margin: 0 0 4px; } h2 { margin-top: 36px; border-bottom: 2px solid #dcdcde; padding-bottom: 4px; }
.muted { color: #646970; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(200px, 1fr)); gap: 12px; }
.card { background: #fff; border: 1px solid #dcdcde; border-radius: 6px; padding: 10px 14px; }
.card b { display: block; font-size: 12px; color: #646970; text-transform: uppercase; letter-spacing: .04em; }
figure { background: #fff; border: 1px solid #dcdcde; border-radius: 6px; margin: 16px 0; padding: 8px; }
figure svg { max-width: 100%; height: auto; display: block; margin: 0 auto; }
figure.wide { overflow-x: auto; } figure.wide svg { max-width: none; }
figcaption { color: #646970; font-size: 13px; padding: 4px 8px; }
article { background: #fff; border: 1px solid #dcdcde; border-radius: 6px; padding: 4px 18px 12px;
          margin: 16px 0; }
.text { white-space: pre-wrap; }
table { border-collapse: collapse; margin: 8px 0; } td, th { padding: 3px 10px; text-align: left;
  border-bottom: 1px solid #eee; font-size: 14px; } th { color: #646970; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.badge { display: inline-block; padding: 0 8px; border-radius: 10px; font-size: 12px; background: #dcdcde; }
.badge.star { background: #f0b849; }
pre { background: #1d2327; color: #f0f0f1; padding: 12px; border-radius: 6px; overflow-x: auto;
      font-size: 12.5px; line-height: 1.45; }
summary { cursor: pointer; font-weight: 600; margin: 8px 0; }
"""


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _card(label: str, value: str) -> str:
    return f'<div class="card"><b>{esc(label)}</b>{esc(value)}</div>'


def _summary(data: RunData) -> str:
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
    extra = ""
    if options:
        extra = f'<p class="muted">options: {esc(json.dumps(options, sort_keys=True))}</p>'
    if meta.get("message"):
        extra += f'<p class="muted">{esc(meta["message"])}</p>'
    extra += f'<p class="verdict"><b>Finding:</b> {esc(s.verdict(data.experiments))}</p>'
    return '<div class="cards">' + "".join(_card(k, v) for k, v in cards) + "</div>" + extra


def _figure(svg: str, caption: str, wide: bool = False) -> str:
    opening = '<figure class="wide">' if wide else "<figure>"
    return f"{opening}{svg}<figcaption>{esc(caption)}</figcaption></figure>"


def _fitness_table(e: common_pb2.Experiment) -> str:
    f, m = e.fitness, e.evaluation.metrics
    rows = [
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
    body = "".join(f'<tr><th>{esc(k)}</th><td class="num">{esc(v)}</td></tr>' for k, v in rows)
    return f"<table>{body}</table>"


def _design(rank: int, e: common_pb2.Experiment, names: dict[str, str]) -> str:
    parent = e.parent_ids[0] if e.parent_ids else ""
    badges = '<span class="badge star">★ confirmed</span> ' if e.confirmation.confirmed else ""
    source = s.layer_source(e).module_source
    sections = [
        ("Motivation", e.proposal.motivation),
        ("Results", e.analysis.results_analysis),
        ("Synthesis", e.analysis.synthesis),
    ]
    text = "".join(f'<h4>{esc(t)}</h4><div class="text">{esc(v or "-")}</div>' for t, v in sections)
    reason = e.analysis.breakthrough_reason
    return (
        f'<article id="design-{esc(e.id)}"><h3>{rank}. {esc(e.name)} {badges}</h3>'
        f'<p class="muted">id {esc(e.id)} · cycle {e.cycle} · parent {esc(names.get(parent, parent) or "-")}'
        f" · judged by {esc(e.fitness.judge.judged_by or '?')}</p>"
        f"{_fitness_table(e)}{text}"
        + (f'<p class="muted">{esc(reason)}</p>' if reason else "")
        + f"<details><summary>Code ({len(source.splitlines())} lines)</summary>"
        f"<pre><code>{esc(source)}</code></pre></details></article>"
    )


def render(data: RunData, generated_at: dt.datetime | None = None) -> str:
    """The whole page."""
    experiments = data.experiments
    top = s.candidates(experiments)[: plots.TOP]
    # Baselines that scored, reference designs included: they show what is reachable.
    baselines = [
        e for e in s.ranked(experiments, include_all=True) if e.is_baseline and e.status == s.SUCCEEDED
    ]
    title = f"asiarch run {data.info.run_id}"
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
    rendered = "".join(
        _figure(plots.svg(fig, f"fig{i}"), caption, wide) for i, (fig, caption, wide) in enumerate(figures)
    )
    designs = (
        "".join(_design(i, e, data.names) for i, e in enumerate(top, 1))
        or "<p>No succeeded candidates yet.</p>"
    )
    when = (generated_at or dt.datetime.now(dt.UTC)).strftime("%Y-%m-%d %H:%M UTC")
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<style>{CSS}</style></head><body><main>"
        f'<h1>{esc(title)}</h1><p class="muted">Report generated {esc(when)} by asiarch report.</p>'
        f"<h2>Summary</h2>{_summary(data)}"
        f"<h2>Progress</h2>{rendered}"
        f"<h2>Top designs</h2>{designs}"
        "</main></body></html>\n"
    )


def write(data: RunData, out: Path) -> Path:
    """Render the report to `out` atomically: a browser reloading the page never sees half a file."""
    out.parent.mkdir(parents=True, exist_ok=True)
    temporary = out.with_name(f".{out.name}.tmp")
    temporary.write_text(render(data), encoding="utf-8")
    temporary.replace(out)
    return out
