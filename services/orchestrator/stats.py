"""A discovery run's numbers per cycle (`RUN_DIR/stats.json`) and the proxies' correlation with training.

What this module guarantees:
- `stats.json` has the schema below (version 1), which `asiarch bench discovery` reads; it is written
  whole after every cycle (a temporary file, then `os.replace`), so a reader never sees half of it, and a
  resumed run reads it and appends its cycles (a cycle run again after a stop gets a second entry: the
  last one is the cycle's).
- `proxy_correlations` is the one measure of how well a zero-cost proxy predicts training, used by the
  loop's proxy filter and by the benchmark's report; `clears_bar` is the one rule for trusting it.

    {"version": 1, "run_id": str, "strategy": str, "budget": str, "parallel": int,
     "cycles": [{"cycle": int, "started": unix float, "wall_seconds": float, "engineer_seconds": float,
                 "proposals": int, "duplicates": int,
                 "rejected": {"static": int, "functional": int, "proxy": int},
                 "evaluated": int, "valid": int, "confirmations": int, "confirmed": int,
                 "best_confirmed_improvement": float | null, "cpu_seconds": float | null,
                 "reused": int}]}

`reused` (added within version 1; absent in older files, read as 0) counts the cycle's evaluations copied
from another run instead of trained (`Options.reuse_from`: baselines' and replicates' twins).

A cycle's time is its own stretch of the run: from the end of the cycle before (its proposals were
prepared while that one trained) or, for the first cycle of an invocation, from when its preparation
began, to the end of its last record and confirmation; so the cycles' wall seconds add up to the time
spent in cycles. `engineer_seconds` sums the durations of the cycle's Evaluate calls (confirmations
included; with --parallel N they overlap, so it may exceed the wall time N-fold).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from asiarch.common.contract import budget_presets
from asiarch.orchestrator.results.summary import mean_mqar
from asiarch.v1 import common_pb2

STATS_FILE = "stats.json"
VERSION = 1
# The proxy filter acts only on a proxy this well correlated with rung-1 loss, measured on this many.
RHO_BAR = 0.5
CANDIDATES_BAR = 30


@dataclass
class Rejected:
    """Proposals that never got a training slot, by why."""

    static: int = 0
    functional: int = 0
    proxy: int = 0


@dataclass
class CycleStats:
    """One cycle's entry of stats.json (the module docstring says what each number counts)."""

    cycle: int
    started: float  # unix time
    wall_seconds: float = 0.0
    engineer_seconds: float = 0.0
    proposals: int = 0  # researcher answers received
    duplicates: int = 0  # answers that repeated a design the run already had
    rejected: Rejected = field(default_factory=Rejected)
    evaluated: int = 0  # Evaluate calls for new candidates (not confirmations, not reused twins)
    valid: int = 0  # of those, evaluations that SUCCEEDED
    confirmations: int = 0
    confirmed: int = 0
    best_confirmed_improvement: float | None = None  # nats/token, over the run so far
    cpu_seconds: float | None = None  # the local services' CPU time in the cycle; None: not measured
    reused: int = 0  # evaluations copied from a twin in another run (Options.reuse_from), not trained

    @classmethod
    def from_json(cls, entry: dict[str, Any]) -> CycleStats:
        return cls(**{**entry, "rejected": Rejected(**entry.get("rejected", {}))})


@dataclass
class RunStats:
    """stats.json of one run."""

    run_id: str
    strategy: str
    budget: str
    parallel: int
    cycles: list[CycleStats] = field(default_factory=list)

    @classmethod
    def load(cls, run_dir: Path, run_id: str, strategy: str, budget: str, parallel: int) -> RunStats:
        """The run's file with this invocation's options, its cycles kept; a new one when there is none.
        ValueError for a file this version cannot read."""
        path = run_dir / STATS_FILE
        stats = cls(run_id, strategy, budget, parallel)
        if path.exists():
            data = json.loads(path.read_text())
            if data.get("version") != VERSION:
                raise ValueError(f"{path}: version {data.get('version')!r}, this asiarch reads {VERSION}")
            stats.cycles = [CycleStats.from_json(entry) for entry in data["cycles"]]
        return stats

    def append(self, cycle: CycleStats, run_dir: Path) -> None:
        """Add a finished cycle and write the file at once."""
        self.cycles.append(cycle)
        run_dir.mkdir(parents=True, exist_ok=True)
        data = {"version": VERSION, **asdict(self)}
        with tempfile.NamedTemporaryFile("w", dir=run_dir, prefix=f".{STATS_FILE}.", delete=False) as file:
            json.dump(data, file, indent=2)
        os.replace(file.name, run_dir / STATS_FILE)


def best_confirmed_improvement(experiments: Iterable[common_pb2.Experiment]) -> float | None:
    """The largest mean paired improvement (nats/token) among the confirmed designs; None when none is."""
    found = [e.confirmation.improvement_mean for e in experiments if e.confirmation.confirmed]
    return max(found, default=None)


def cpu_seconds(pids: Iterable[int]) -> float | None:
    """User + system CPU seconds of these processes so far, with those of their reaped children (a
    sandbox's time lands in its engineer's once it is waited for); None when no pid is given or one
    cannot be read (a process gone takes its time with it)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    pids = list(pids)
    for pid in pids:
        try:
            text = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return None
        # Fields after the command name, which is in parentheses and may hold spaces: utime, stime,
        # cutime and cstime are fields 14-17 of proc(5), so 11-14 after the closing parenthesis.
        fields = text.rsplit(")", 1)[1].split()
        total += sum(int(value) for value in fields[11:15])
    return total / ticks if pids else None


class Correlation(NamedTuple):
    """How a proxy ranks the run's candidates against what training measured (Spearman's rho, signed so
    that > 0 means the proxy points the right way: higher proxy, lower loss; higher proxy, higher MQAR)."""

    rho_loss: float | None  # None: fewer than 3 candidates, or no variation to rank
    rho_mqar: float | None
    n: int  # candidates with the proxy and a rung-1 val_loss


def proxy_correlations(experiments: Iterable[common_pb2.Experiment], budget: str) -> dict[str, Correlation]:
    """Per proxy name, its correlation with rung-1 val_loss and mean MQAR accuracy over the succeeded,
    original (not replicate) experiments trained with the preset `budget` (e.g. "cpu"): proxies are
    comparable within one budget only."""
    preset = budget_presets()[budget]
    measured = [
        e
        for e in experiments
        if e.status == common_pb2.EXPERIMENT_STATUS_SUCCEEDED
        and not e.replicate_of
        and e.evaluation.budget.preset == preset
        and e.evaluation.budget.rung <= 1  # a promoted candidate reports rung 2's loss
        and e.evaluation.metrics.HasField("val_loss")
    ]
    names = sorted({name for e in measured for name in e.evaluation.metrics.proxies})
    found: dict[str, Correlation] = {}
    for name in names:
        having = [e for e in measured if name in e.evaluation.metrics.proxies]
        proxy = [e.evaluation.metrics.proxies[name] for e in having]
        losses = [-e.evaluation.metrics.val_loss for e in having]  # higher is better, as for MQAR
        scored = [(p, m) for p, e in zip(proxy, having, strict=True) if (m := mean_mqar(e)) is not None]
        rho_mqar = _spearman([p for p, _ in scored], [m for _, m in scored])
        found[name] = Correlation(_spearman(proxy, losses), rho_mqar, len(having))
    return found


def clears_bar(correlation: Correlation | None) -> bool:
    """Whether a proxy may filter: rho against loss >= RHO_BAR measured on >= CANDIDATES_BAR candidates."""
    return (
        correlation is not None
        and correlation.n >= CANDIDATES_BAR
        and correlation.rho_loss is not None
        and correlation.rho_loss >= RHO_BAR
    )


def describe(correlation: Correlation | None) -> str:
    """'rho 0.31 on 12 candidates', for the messages that say why the filter is on or off."""
    if correlation is None or correlation.rho_loss is None:
        return f"rho n/a on {correlation.n if correlation else 0} candidates"
    return f"rho {correlation.rho_loss:.2f} on {correlation.n} candidates"


def bar() -> str:
    """The bar a proxy must clear, in words."""
    return f"needs >= {RHO_BAR} on >= {CANDIDATES_BAR}"


def _spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    if len(x) < 3:
        return None
    from scipy import stats as scipy_stats  # here: a second to import, and the CLI's --help reads this module

    with warnings.catch_warnings():  # constant input: no ranking, rho is NaN
        warnings.simplefilter("ignore")
        rho = float(scipy_stats.spearmanr(x, y).statistic)
    return rho if math.isfinite(rho) else None
