"""The five-part analysis, written deterministically from the comparison table.

Used without an LLM and whenever the LLM gives no valid answer. Each part is
built from numbers the table holds, so a reader can check every sentence.
"""

from __future__ import annotations

from asiarch.analyst.comparisons import metric_values
from asiarch.common import contract
from asiarch.v1 import common_pb2

RECALL_WORDS = ("recall", "memory", "associative", "retriev", "capacity", "mqar", "forget")
SPEED_WORDS = ("throughput", "efficien", "fast", "speed", "cheap", "parameter")
WRITTEN_BY = "deterministic"


def _pct(delta: float, base: float) -> str:
    return f"{delta / base:+.1%}" if base else f"{delta:+.4g}"


def _find(table: list[common_pb2.Comparison], relation: int) -> common_pb2.Comparison | None:
    return next((c for c in table if c.relation == relation), None)


def _delta(comparison: common_pb2.Comparison | None, metric: str) -> common_pb2.MetricDelta | None:
    if comparison is None:
        return None
    return next((d for d in comparison.deltas if d.metric == metric), None)


def _describe(comparison: common_pb2.Comparison, metrics: tuple[str, ...]) -> str:
    parts = []
    for metric in metrics:
        d = _delta(comparison, metric)
        if d is not None:
            parts.append(f"{metric} {d.value:.4g} vs {d.other_value:.4g} ({_pct(d.delta, d.other_value)})")
    return "; ".join(parts) or "no shared metrics"


def failure_analysis(experiment: common_pb2.Experiment) -> common_pb2.Analysis:
    evaluation = experiment.evaluation
    stage = contract.stage_key(evaluation.failed_stage)
    repairs = len(evaluation.repairs)
    reason = evaluation.failure_reason.strip() or "no reason was reported"
    return common_pb2.Analysis(
        design_evaluation=(
            f"{experiment.name} did not complete its evaluation; it failed at the {stage} stage."
        ),
        results_analysis=f"No metrics to analyse. Failure: {reason[:600]}",
        expectation_vs_reality=(
            f"The motivation could not be tested: the design failed after {repairs} repair attempt(s)."
        ),
        theoretical_explanation=(
            "Failures at the static or functional stage point to code that breaks the layer contract "
            "(imports, shapes, causality, sub-quadratic cost); failures in training point to instability."
        ),
        synthesis=(
            f"Avoid repeating the construct that failed at the {stage} stage; if the idea is worth keeping, "
            "re-express it with the kernel library's primitives."
        ),
        written_by=WRITTEN_BY,
    )


HEADLINE = ("val_loss", "benchmark_mean", "tokens_per_second", "layer_parameters")


def _design(
    experiment: common_pb2.Experiment, parent: common_pb2.Comparison | None, values: dict[str, float]
) -> str:
    """What the design is, where it comes from, and how its checks went."""
    name = experiment.name or experiment.proposal.name
    checks = experiment.evaluation.checks
    passed = sum(c.passed for c in checks)
    origin = experiment.proposal.generator or common_pb2.ProposalOrigin.Name(experiment.proposal.origin)
    origin = origin.removeprefix("PROPOSAL_ORIGIN_").lower().replace("_", " ")
    design = (
        f"{name} "
        + (f"({origin}) " if origin != "unspecified" else "")
        + (f"changes {parent.name}. " if parent else "has no recorded parent. ")
        + (f"It passed {passed} of {len(checks)} checks" if checks else "No checks were reported")
        + (
            f" after {len(experiment.evaluation.repairs)} repair(s). "
            if experiment.evaluation.repairs
            else ". "
        )
        + (f"Layer parameters: {values['layer_parameters']:,.0f}." if "layer_parameters" in values else "")
    )
    return design.strip()


def _results(
    values: dict[str, float],
    parent: common_pb2.Comparison | None,
    baseline: common_pb2.Comparison | None,
) -> str:
    """The measured numbers, then the headline metrics against the parent and the baseline."""
    results = [f"val_loss {values['val_loss']:.4f}" if "val_loss" in values else "val_loss not measured"]
    results += [f"{m} {values[m]:.3f}" for m in values if "/" in m]  # the benchmarks
    if "tokens_per_second" in values:
        results.append(f"{values['tokens_per_second']:,.0f} tokens/s")
    text = "Measured " + ", ".join(results) + "."
    if parent is not None:
        text += f" Against the parent: {_describe(parent, HEADLINE)}."
    if baseline is not None:
        text += f" Against baseline {baseline.name}: {_describe(baseline, HEADLINE)}."
    return text


def _expectation(motivation: str, reference: common_pb2.Comparison | None) -> str:
    """Whether the metric the motivation is about moved the right way against `reference`."""
    focus = "benchmark_mean" if any(w in motivation.lower() for w in RECALL_WORDS) else "val_loss"
    if any(w in motivation.lower() for w in SPEED_WORDS) and focus == "val_loss":
        focus = "tokens_per_second"
    target = _delta(reference, focus)
    if reference is None or target is None:
        expectation = f"The motivation's main claim concerns {focus}, which could not be compared."
    else:
        verdict = "held" if target.improved else "did not hold"
        expectation = (
            f"The motivation targets {focus}; against {reference.name} it moved "
            f"{target.other_value:.4g} → {target.value:.4g}, so the expectation {verdict}."
        )
    if motivation:
        expectation += f" Claim tested: “{motivation[:240]}{'…' if len(motivation) > 240 else ''}”"
    return expectation


def _explanation(parent: common_pb2.Comparison | None, siblings: list[common_pb2.Comparison]) -> str:
    """What the parent and the siblings let the results be attributed to."""
    explained = []
    if parent is not None:
        wins = [d.metric for d in parent.deltas if d.improved]
        losses = [d.metric for d in parent.deltas if not d.improved and d.delta != 0]
        explained.append(
            "The parent differs only by this proposal's change, so its deltas are the change's effect: "
            f"better on {', '.join(wins) or 'nothing'}, worse on {', '.join(losses) or 'nothing'}."
        )
    if siblings:
        better = sum(1 for s in siblings if (d := _delta(s, "val_loss")) is not None and d.improved)
        explained.append(
            f"Among {len(siblings)} sibling(s) (other changes to the same parent) it has lower val_loss than "
            f"{better}, which separates this change from the parent's own quality."
        )
    if not explained:
        explained.append("Without a parent or siblings there is no ablation to attribute the results to.")
    return " ".join(explained)


def _synthesis(parent: common_pb2.Comparison | None) -> str:
    """Keep, pair or revert the change, from its effect on loss and recall against the parent."""
    keep = _delta(parent, "val_loss")
    recall = _delta(parent, "benchmark_mean")
    if keep is None:
        return "Use this design as a reference point for later comparisons."
    if keep.improved and (recall is None or recall.improved):
        return "Keep this change: it improves language modelling without hurting recall; build on it."
    if keep.improved:
        return (
            "Keep the change for language modelling but pair it with a mechanism that restores recall "
            "(a delta-rule write, a larger state, or short convolutions on q and k)."
        )
    if recall is not None and recall.improved:
        return (
            "The change helps recall but costs language-modelling loss; look for a gated variant that "
            "lets the layer choose between the two behaviours."
        )
    return "Revert this change: it is worse than its parent on the measured metrics."


def deterministic_analysis(
    experiment: common_pb2.Experiment, table: list[common_pb2.Comparison]
) -> common_pb2.Analysis:
    values = metric_values(experiment)
    parent = _find(table, common_pb2.RELATION_PARENT)
    baseline = _find(table, common_pb2.RELATION_BASELINE)
    siblings = [c for c in table if c.relation == common_pb2.RELATION_SIBLING]
    return common_pb2.Analysis(
        design_evaluation=_design(experiment, parent, values),
        results_analysis=_results(values, parent, baseline),
        expectation_vs_reality=_expectation(experiment.proposal.motivation.strip(), parent or baseline),
        theoretical_explanation=_explanation(parent, siblings),
        synthesis=_synthesis(parent),
        written_by=WRITTEN_BY,
    )


def table_text(table: list[common_pb2.Comparison]) -> str:
    """The comparison table as plain text for prompts and the CLI."""
    lines = []
    for comparison in table:
        relation = common_pb2.Relation.Name(comparison.relation).removeprefix("RELATION_").lower()
        lines.append(f"vs {relation} {comparison.name}:")
        lines += [
            f"  {d.metric}: {d.value:.4g} vs {d.other_value:.4g} ({d.delta:+.4g}, "
            f"{'better' if d.improved else 'worse or equal'})"
            for d in comparison.deltas
        ]
    return "\n".join(lines) or "(no relatives to compare with)"
