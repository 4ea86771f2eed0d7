"""A small recorded run for the results-command tests: baselines, four cycles of children, one failure.

Most ids are the designs' names (short to type in the tests); the last cycle's ids are shaped as
`discover` makes them (RUN.c0004.N), with names that share a prefix, for the id/name lookups.

Layer sources are real: the researcher's DSL renders the baselines and mutated children, the
engineer's softmax file is the reference, and one hand-written "kitchen sink" layer imports
every kernel the exporter knows, in every import style it rewrites.
"""

from __future__ import annotations

import random
from pathlib import Path

from asiarch.common.contract import DEFAULT_CLASS_NAME
from asiarch.researcher.dsl import (
    DELTANET,
    GATED_DELTANET,
    LINEAR_ATTENTION,
    ArchitectureSpec,
    mutate,
    render,
)
from asiarch.v1 import common_pb2

RUN_ID = "results-run"
REPO = Path(__file__).resolve().parents[2]
SOFTMAX = (REPO / "services" / "engineer" / "baselines" / "softmax_attention.py").read_text()
SCRIPT_MOTIVATION = "Widen the keys of the best design <script>alert('x')</script> & measure recall."

KITCHEN_SINK = '''"""Kitchen sink: every kernel and import style the exporter rewrites."""

from __future__ import annotations

import torch
from torch import nn

import asiarch.kernels as K
import fla.ops.gated_delta_rule
from asiarch.kernels import fused_recurrent_simple_gla
from asiarch.kernels.modules import RMSNorm as HeadNorm
from fla.modules import L2Norm, ShortConvolution
from fla.modules.l2norm import l2_norm
from fla.ops.delta_rule import chunk_delta_rule, fused_recurrent_delta_rule
from fla.ops.linear_attn import (
    chunk_linear_attn,
    fused_recurrent_linear_attn,
)
from fla.ops.simple_gla import chunk_simple_gla


class Mixer(nn.Module):
    def __init__(self, hidden_size: int = 64, num_heads: int = 4, **kwargs: object) -> None:
        super().__init__()
        self.h, self.d = num_heads, hidden_size // num_heads
        self.qkv = nn.Linear(hidden_size, 3 * hidden_size, bias=False)
        self.conv = ShortConvolution(3 * hidden_size, 4)
        self.ab = nn.Linear(hidden_size, 2 * num_heads, bias=False)
        self.qk_norm = L2Norm()
        self.norm = HeadNorm(self.d)
        self.gated_norm = K.FusedRMSNormGated(self.d)
        self.gate = nn.Linear(hidden_size, hidden_size, bias=False)
        self.out = nn.Linear(hidden_size, hidden_size, bias=False)

    def forward(self, x: torch.Tensor, **kwargs: object) -> tuple[torch.Tensor, None]:
        from asiarch.kernels import l2norm

        B, T, _ = x.shape
        y, _ = self.conv(self.qkv(x))
        q, k, v = y.view(B, T, 3, self.h, self.d).unbind(2)
        q, k = l2norm(q), self.qk_norm(k)
        a, b = self.ab(x).view(B, T, 2, self.h).unbind(2)
        g, beta = -torch.nn.functional.softplus(a), b.sigmoid()
        outs = [
            chunk_delta_rule(q, k, v, beta)[0],
            fused_recurrent_delta_rule(q, k, v, beta)[0],
            fla.ops.gated_delta_rule.chunk_gated_delta_rule(q, k, v, g, beta)[0],
            K.fused_recurrent_gated_delta_rule(q, k, v, g, beta=beta)[0],
            chunk_simple_gla(q, k, v, g)[0],
            fused_recurrent_simple_gla(q, k, v, g)[0],
            chunk_linear_attn(q, l2_norm(k), v, normalize=False)[0],
            fused_recurrent_linear_attn(q, k, v)[0],
        ]
        o = self.norm(sum(outs) / len(outs))
        o = self.gated_norm(o, self.gate(x).view(B, T, self.h, self.d))
        return self.out(o.reshape(B, T, -1)), None
'''


def mutated(seed: int, spec: ArchitectureSpec = GATED_DELTANET) -> tuple[ArchitectureSpec, str]:
    return mutate(spec, random.Random(seed))


def _curve(final: float) -> list[common_pb2.LossPoint]:
    points = []
    for step in range(1, 11):
        train = final + 3.5 * (1 - step / 10) ** 2 + 0.05
        point = common_pb2.LossPoint(step=step * 10, train_loss=train, elapsed_seconds=step * 1.5)
        if step % 5 == 0:
            point.val_loss = final + 2.0 * (1 - step / 10) ** 2
        points.append(point)
    return points


def _checks(failed: bool) -> list[common_pb2.CheckResult]:
    return [
        common_pb2.CheckResult(
            name="static.imports", stage=common_pb2.EVALUATION_STAGE_STATIC_CHECKS, passed=True
        ),
        common_pb2.CheckResult(
            name="functional.causality",
            stage=common_pb2.EVALUATION_STAGE_FUNCTIONAL_CHECKS,
            passed=not failed,
            message="output at t=3 changes when token 7 changes" if failed else "",
            line=41 if failed else 0,
        ),
    ]


def _metrics(loss: float, recall: tuple[float, float], failed: bool) -> common_pb2.Metrics:
    """Cost figures always; losses, the loss curve and MQAR scores only for a run that finished."""
    metrics = common_pb2.Metrics(
        tokens_per_second=21_000,
        parameters=1_200_000,
        layer_parameters=66_000,
        peak_memory_bytes=350 * 2**20,
        train_seconds=42.0,
        steps=100,
    )
    if failed:
        return metrics
    metrics.val_loss = loss
    metrics.bits_per_byte = loss / 0.6931471805599453
    metrics.train_loss = loss + 0.05
    metrics.loss_curve.extend(_curve(loss))
    metrics.benchmarks.extend(
        common_pb2.BenchmarkScore(
            name=f"mqar/seq{64 * 2**i}_kv{4 * 2**i}",
            task="mqar",
            score=score,
            settings={"seq_len": 64 * 2**i, "kv_pairs": 4 * 2**i},
        )
        for i, score in enumerate(recall)
    )
    return metrics


def _evaluation(
    source: str, class_name: str, metrics: common_pb2.Metrics, failed: bool
) -> common_pb2.Evaluation:
    return common_pb2.Evaluation(
        status=common_pb2.EVALUATION_STATUS_FAILED if failed else common_pb2.EVALUATION_STATUS_SUCCEEDED,
        failed_stage=common_pb2.EVALUATION_STAGE_FUNCTIONAL_CHECKS if failed else 0,
        failure_reason="functional checks: the layer is not causal" if failed else "",
        checks=_checks(failed),
        # The engineer records the source it evaluated even when nothing was repaired.
        final_source=common_pb2.ArchitectureSource(module_source=source, class_name=class_name),
        metrics=metrics,
        budget=common_pb2.Budget(d_model=64, n_layers=2, n_heads=4, seq_len=128, train_steps=100),
        device="cpu: 2 threads",
        wall_seconds=50.0,
    )


def experiment(
    experiment_id: str,
    source: str,
    *,
    parent: str | tuple[str, ...] = (),
    cycle: int = 0,
    loss: float = 2.0,
    recall: tuple[float, float] = (0.3, 0.2),
    baseline: bool = False,
    reference_only: bool = False,
    failed: bool = False,
    motivation: str = "",
    class_name: str = DEFAULT_CLASS_NAME,
    spec: ArchitectureSpec | None = None,
    generator: str = "",
    run_id: str = RUN_ID,
    name: str = "",
) -> common_pb2.Experiment:
    origin = common_pb2.PROPOSAL_ORIGIN_BASELINE if baseline else common_pb2.PROPOSAL_ORIGIN_DSL_MUTATION
    return common_pb2.Experiment(
        id=experiment_id,
        run_id=run_id,
        name=name or experiment_id,
        parent_ids=[parent] if isinstance(parent, str) else list(parent),
        cycle=cycle,
        is_baseline=baseline,
        status=common_pb2.EXPERIMENT_STATUS_FAILED if failed else common_pb2.EXPERIMENT_STATUS_SUCCEEDED,
        proposal=common_pb2.Proposal(
            name=name or experiment_id,
            motivation=motivation or f"{experiment_id}: a design worth measuring.",
            source=common_pb2.ArchitectureSource(module_source=source, class_name=class_name),
            spec_json=spec.model_dump_json() if spec else "",
            origin=origin,
            generator=generator or ("baseline" if baseline else "mutation:test"),
            reference_only=reference_only,
        ),
        evaluation=_evaluation(source, class_name, _metrics(loss, recall, failed), failed),
    )


def _baselines() -> list[common_pb2.Experiment]:
    return [
        experiment(
            "deltanet", render(DELTANET), baseline=True, loss=2.20, recall=(0.30, 0.20), spec=DELTANET
        ),
        experiment(
            "gated-deltanet",
            render(GATED_DELTANET),
            baseline=True,
            loss=2.10,
            recall=(0.35, 0.25),
            spec=GATED_DELTANET,
        ),
        experiment(
            "softmax",
            SOFTMAX,
            baseline=True,
            reference_only=True,
            loss=2.05,
            recall=(0.60, 0.50),
            class_name="SoftmaxAttention",
        ),
    ]


def _repaired_child() -> common_pb2.Experiment:
    """c2-l2: the proposal did not work, the engineer evaluated the patched source."""
    l2 = experiment(
        "c2-l2",
        render(DELTANET),
        parent="c1-gate",
        cycle=2,
        loss=1.90,
        recall=(0.70, 0.60),
        motivation="Normalise keys so the delta rule stays stable.",
    )
    l2.proposal.source.module_source = render(DELTANET).replace("l2norm(q), l2norm(k)", "q, k  # BROKEN")
    l2.evaluation.final_source.CopyFrom(common_pb2.ArchitectureSource(module_source=render(DELTANET)))
    l2.evaluation.repairs.append(
        common_pb2.RepairAttempt(
            attempt=1,
            failed_stage=common_pb2.EVALUATION_STAGE_FUNCTIONAL_CHECKS,
            error="state norm grows without bound",
            summary="restore the L2 normalisation of q and k",
            patch="-q, k\n+l2norm(q), l2norm(k)",
            succeeded=True,
            repaired_by="dsl:deterministic",
        )
    )
    return l2


def _cycles_1_and_2(gate_spec: ArchitectureSpec, gate_generator: str) -> list[common_pb2.Experiment]:
    return [
        experiment(
            "c1-gate",
            render(gate_spec),
            parent="deltanet",
            cycle=1,
            loss=2.00,
            recall=(0.50, 0.40),
            spec=gate_spec,
            generator=gate_generator,
            motivation="Add a Mamba-2 forget gate so stale associations decay.",
        ),
        experiment(
            "c1-noconv",
            render(LINEAR_ATTENTION),
            parent="deltanet",
            cycle=1,
            loss=2.40,
            recall=(0.20, 0.10),
            motivation="Drop the short convolution and see what breaks.",
        ),
        _repaired_child(),
        experiment(
            "c2-fail",
            render(DELTANET),
            parent="c1-gate",
            cycle=2,
            failed=True,
            motivation="Look ahead one token (this is not causal).",
        ),
    ]


def _cycle_3(best_spec: ArchitectureSpec, best_generator: str) -> list[common_pb2.Experiment]:
    return [
        experiment(
            "c3-best",
            render(best_spec),
            parent="c2-l2",
            cycle=3,
            loss=1.85,
            recall=(0.72, 0.62),
            spec=best_spec,
            generator=best_generator,
            motivation=SCRIPT_MOTIVATION,
        ),
        experiment(
            "c3-kitchen",
            KITCHEN_SINK,
            parent=("c2-l2", "c1-noconv"),
            cycle=3,
            loss=2.25,
            recall=(0.30, 0.20),
            class_name="Mixer",
            motivation="Average every kernel family (a crossover of two parents).",
        ),
        experiment(
            "c3-linear",
            render(LINEAR_ATTENTION),
            parent="gated-deltanet",
            cycle=3,
            loss=2.30,
            recall=(0.25, 0.15),
        ),
    ]


def _cycle_4() -> list[common_pb2.Experiment]:
    """Ids as discover makes them (the run id, the cycle, the slot), names that share a prefix."""
    return [
        experiment(
            f"{RUN_ID}.c0004.0",
            render(DELTANET),
            name="c4-wide-keys",
            parent="c3-best",
            cycle=4,
            loss=2.35,
            recall=(0.28, 0.18),
            motivation="Widen the keys and see whether recall follows.",
        ),
        experiment(
            f"{RUN_ID}.c0004.1",
            render(LINEAR_ATTENTION),
            name="c4-wide-values",
            parent="c3-best",
            cycle=4,
            loss=2.38,
            recall=(0.26, 0.16),
            motivation="Widen the values instead of the keys.",
        ),
    ]


def run_experiments() -> list[common_pb2.Experiment]:
    """In recording order (parents first); the last is another run's, in the same store, never shown."""
    gate_spec, gate_generator = mutated(1)
    best_spec, best_generator = mutated(7, gate_spec)
    elsewhere = experiment(
        "elsewhere", render(DELTANET), baseline=True, loss=1.0, recall=(0.9, 0.9), run_id="other-run"
    )
    return [
        *_baselines(),
        *_cycles_1_and_2(gate_spec, gate_generator),
        *_cycle_3(best_spec, best_generator),
        *_cycle_4(),
        elsewhere,
    ]


def replicate(original: common_pb2.Experiment, seed: int, loss: float) -> common_pb2.Experiment:
    """A confirmation replicate of `original`, as discover records it (seed `seed`, rung 2)."""
    copy = experiment(
        f"{original.id}.s{seed}.r2",
        original.proposal.source.module_source,
        loss=loss,
        baseline=original.is_baseline,
        cycle=original.cycle,
        class_name=original.proposal.source.class_name,
        name=f"{original.name} seed {seed}",
    )
    copy.replicate_of = original.id
    copy.evaluation.budget.seed = seed
    copy.evaluation.budget.rung = 2
    return copy


# Paired seeds for two designs that led gated-deltanet (the strongest selectable baseline) in exploration:
# c3-best holds up, c1-gate does not.
CONFIRMATIONS = {
    "gated-deltanet": (2.10, 2.12, 2.09),
    "c3-best": (1.85, 1.86, 1.84),
    "c1-gate": (2.05, 2.14, 2.12),
}
