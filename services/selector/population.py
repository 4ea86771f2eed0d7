"""The selector's data model: candidates, their lineage, and the options of the strategies.

`Population` validates a request's candidates once, up front, so that every
strategy can assume a well-formed forest (unique ids, known parents, no cycles,
finite numbers) and never has to re-check. Every rejection raises
`InvalidArgument` with a message that names the field and the offending
candidate, because the caller is usually another program that has to be fixed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from asiarch.common.errors import InvalidArgument

# Objective names lexicase and pareto understand; "benchmarks" expands to one
# objective per benchmark name. Kept here because option validation needs it.
OBJECTIVES: tuple[str, ...] = ("loss", "benchmarks", "throughput", "parameters")

# Most references a caller may ask for per parent; more would only bloat the
# researcher's prompt.
MAX_REFERENCES = 50

# Bounds on the work of one call (issue 16), so that the worst request allowed answers within a
# few seconds on a small machine (tests/selector/time_selection.py). A Pareto front costs n^2 bits
# of time and memory, so candidates are capped well above any run's population (ASI-Arch's whole
# search: 1,773 experiments). Each distinct benchmark name is an objective of lexicase and pareto
# (the engineer reports three per budget). lexicase filters the whole population once per parent.
# A request over a bound is refused with INVALID_ARGUMENT, not RESOURCE_EXHAUSTED: it would be
# refused whenever it is sent, so the client must change it, not retry it.
MAX_CANDIDATES = 10_000
MAX_BENCHMARKS = 16
MAX_PARENTS = 64


@dataclass(frozen=True)
class CandidateMetrics:
    """What training and benchmarking measured; None where the stage did not run."""

    val_loss: float | None = None  # nats/token, lower is better
    benchmarks: Mapping[str, float] = field(default_factory=dict)  # name -> accuracy, higher is better
    tokens_per_second: float | None = None  # higher is better
    parameters: int | None = None  # fewer is better

    def __post_init__(self) -> None:
        # Copy into a read-only view so a frozen candidate cannot change under
        # a strategy through a dict the caller still holds.
        object.__setattr__(self, "benchmarks", MappingProxyType(dict(self.benchmarks)))


@dataclass(frozen=True)
class Candidate:
    """One experiment the selector may choose as a parent or show as a reference."""

    id: str
    parent_id: str | None  # None or "" for roots
    fitness: float  # composite score, higher is better
    metrics: CandidateMetrics = field(default_factory=CandidateMetrics)
    reference_only: bool = False  # never returned as a parent; may be a reference; counts in clades
    evaluations: int = 1  # 0 is read as 1
    name: str = ""  # display only


@dataclass(frozen=True)
class Options:
    """Strategy knobs; None means the default each strategy documents."""

    parent_pool: int | None = None  # asi-arch: parents from ranks 1..parent_pool; default 10
    reference_pool_end: int | None = None  # references from ranks parent_pool+1..this; default 50
    references: int | None = None  # references per parent, 0..50; default 4
    exploration: float | None = None  # uct c; default sqrt(2)
    success_threshold: float | None = None  # hgm; default 65th fitness percentile clipped to [0.2, 0.8]
    expansion_exponent: float | None = None  # hgm alpha in (0, 1]; default 0.6
    lexicase_epsilon: float | None = None  # default: per-objective median absolute deviation
    objectives: tuple[str, ...] = ()  # subset of OBJECTIVES; empty = all

    def __post_init__(self) -> None:
        # Accept any iterable (a protobuf repeated field, a list) but store a tuple
        # so Options stays hashable and comparable.
        object.__setattr__(self, "objectives", tuple(self.objectives))


DEFAULT_PARENT_POOL = 10
DEFAULT_REFERENCE_POOL_END = 50
DEFAULT_REFERENCES = 4


def _describe(value: float) -> str:
    return "NaN" if math.isnan(value) else repr(value)  # repr gives 'inf' / '-inf'


def _where(index: int, candidate: Candidate) -> str:
    return f"candidates[{index}] (id {candidate.id!r})"


def _check_number(index: int, candidate: Candidate, label: str, value: float | None) -> None:
    # Integers are always finite (and math.isfinite overflows on huge ones).
    if value is not None and not isinstance(value, int) and not math.isfinite(value):
        raise InvalidArgument(f"{_where(index, candidate)}: {label} is {_describe(value)}")


def _check_candidate(index: int, candidate: Candidate) -> None:
    if not candidate.id:
        raise InvalidArgument(f"candidates[{index}]: id must not be empty")
    _check_number(index, candidate, "fitness", candidate.fitness)
    metrics = candidate.metrics
    _check_number(index, candidate, "metrics.val_loss", metrics.val_loss)
    _check_number(index, candidate, "metrics.tokens_per_second", metrics.tokens_per_second)
    _check_number(index, candidate, "metrics.parameters", metrics.parameters)
    for name, score in metrics.benchmarks.items():
        _check_number(index, candidate, f"metrics.benchmarks[{name!r}]", score)
    if candidate.evaluations < 0:
        raise InvalidArgument(
            f"{_where(index, candidate)}: evaluations must be >= 0, got {candidate.evaluations}"
        )


def check_candidate_count(count: int) -> None:
    """Refuse a request with more candidates than one call may hold."""
    if count > MAX_CANDIDATES:
        raise InvalidArgument(f"candidates: at most {MAX_CANDIDATES} per call, got {count}")


def _check_benchmark_names(candidates: Sequence[Candidate]) -> None:
    names = {name for c in candidates for name in c.metrics.benchmarks}
    if len(names) > MAX_BENCHMARKS:
        raise InvalidArgument(
            f"candidates: at most {MAX_BENCHMARKS} distinct metrics.benchmarks names per call "
            f"(each is an objective), got {len(names)}"
        )


class Population:
    """A validated forest of candidates with the lookups the strategies need.

    Order matters: ties anywhere are broken by input order, so the same request
    always gets the same answer.
    """

    def __init__(self, candidates: Iterable[Candidate]) -> None:
        self._candidates: tuple[Candidate, ...] = tuple(candidates)
        if not self._candidates:
            raise InvalidArgument("candidates must not be empty")
        check_candidate_count(len(self._candidates))
        self._index: dict[str, int] = {}
        for index, candidate in enumerate(self._candidates):
            _check_candidate(index, candidate)
            first = self._index.get(candidate.id)
            if first is not None:
                raise InvalidArgument(
                    f"duplicate candidate id {candidate.id!r} at candidates[{first}] and candidates[{index}]"
                )
            self._index[candidate.id] = index
        _check_benchmark_names(self._candidates)

        self._parent: dict[str, str | None] = {}
        self._children: dict[str, list[Candidate]] = {c.id: [] for c in self._candidates}
        for index, candidate in enumerate(self._candidates):
            parent = candidate.parent_id or None
            if parent == candidate.id:
                raise InvalidArgument(f"{_where(index, candidate)}: parent_id {parent!r} is its own id")
            if parent is not None and parent not in self._index:
                raise InvalidArgument(
                    f"{_where(index, candidate)}: parent_id {parent!r} is not among the candidates"
                )
            self._parent[candidate.id] = parent
            if parent is not None:
                self._children[parent].append(candidate)
        self._check_acyclic()

        self._ranked_all = self._rank(self._candidates)
        self._ranked = tuple(c for c in self._ranked_all if not c.reference_only)
        self._rank_of = {c.id: rank for rank, c in enumerate(self._ranked_all)}

    def _check_acyclic(self) -> None:
        # Walk up from each candidate; a walk that meets its own path is a cycle.
        # Nodes already proven to reach a root are skipped, so this is O(n).
        reaches_root: set[str] = set()
        for candidate in self._candidates:
            path: list[str] = []
            on_path: set[str] = set()
            node: str | None = candidate.id
            while node is not None and node not in reaches_root:
                if node in on_path:
                    cycle = [*path[path.index(node) :], node]
                    raise InvalidArgument(f"lineage cycle: {' -> '.join(cycle)}")
                path.append(node)
                on_path.add(node)
                node = self._parent[node]
            reaches_root.update(path)

    def _rank(self, candidates: Sequence[Candidate]) -> tuple[Candidate, ...]:
        # sorted() is stable, so equal fitness keeps input order.
        return tuple(sorted(candidates, key=lambda c: -c.fitness))

    @property
    def candidates(self) -> tuple[Candidate, ...]:
        """All candidates, in input order."""
        return self._candidates

    def __len__(self) -> int:
        return len(self._candidates)

    def __contains__(self, candidate_id: object) -> bool:
        return candidate_id in self._index

    def get(self, candidate_id: str) -> Candidate:
        """The candidate with this id (KeyError if absent: a programming error, not bad input)."""
        return self._candidates[self._index[candidate_id]]

    def index(self, candidate_id: str) -> int:
        """Position of the candidate in the input, used as the final tie-break."""
        return self._index[candidate_id]

    def parent(self, candidate_id: str) -> Candidate | None:
        """The candidate's parent, or None for a root."""
        parent = self._parent[candidate_id]
        return None if parent is None else self.get(parent)

    def children(self, candidate_id: str) -> tuple[Candidate, ...]:
        """Direct children, in input order (reference_only ones included)."""
        return tuple(self._children[candidate_id])

    def clade(self, candidate_id: str) -> tuple[Candidate, ...]:
        """The candidate and all its descendants, depth-first in input order."""
        result: list[Candidate] = []
        stack = [self.get(candidate_id)]
        while stack:
            node = stack.pop()
            result.append(node)
            stack.extend(reversed(self._children[node.id]))
        return tuple(result)

    def clade_sums(self, value: Callable[[Candidate], float]) -> dict[str, float]:
        """Sum of value(c) over each candidate's clade, for every candidate, in O(n).

        uct and hgm need a statistic of every eligible node's clade; summing
        bottom-up avoids walking each clade separately (O(n^2) on a long chain).
        """
        totals = {c.id: float(value(c)) for c in self._candidates}
        for node in reversed(self._preorder()):
            parent = self._parent[node]
            if parent is not None:
                totals[parent] += totals[node]
        return totals

    def _preorder(self) -> list[str]:
        # Parents before children, so reversing it visits children first.
        order: list[str] = []
        stack = [c.id for c in reversed(self._candidates) if self._parent[c.id] is None]
        while stack:
            node = stack.pop()
            order.append(node)
            stack.extend(c.id for c in reversed(self._children[node]))
        return order

    def eligible(self) -> tuple[Candidate, ...]:
        """Candidates that may be returned as parents (not reference_only), in input order."""
        return tuple(c for c in self._candidates if not c.reference_only)

    def ranked(self) -> tuple[Candidate, ...]:
        """Eligible candidates by fitness, best first; ties keep input order."""
        return self._ranked

    def ranked_all(self) -> tuple[Candidate, ...]:
        """All candidates (reference_only included) by fitness, best first; ties keep input order."""
        return self._ranked_all

    def rank(self, candidate_id: str) -> int:
        """Position of the candidate in ranked_all() (0 = best)."""
        return self._rank_of[candidate_id]


def _check_finite(name: str, value: float | None) -> None:
    if value is not None and not math.isfinite(value):
        raise InvalidArgument(f"options.{name} must be finite, got {_describe(value)}")


def validate_options(options: Options) -> None:
    """Reject out-of-range options, whichever strategy will read them.

    A bad value is a bug in the caller even when this request's strategy
    ignores the field, and reporting it now beats surprising them later.
    """
    if options.parent_pool is not None and options.parent_pool < 1:
        raise InvalidArgument(f"options.parent_pool must be >= 1, got {options.parent_pool}")
    parent_pool = options.parent_pool if options.parent_pool is not None else DEFAULT_PARENT_POOL
    if options.reference_pool_end is not None and options.reference_pool_end < parent_pool:
        raise InvalidArgument(
            f"options.reference_pool_end must be >= parent_pool ({parent_pool}), "
            f"got {options.reference_pool_end}"
        )
    if options.references is not None and not 0 <= options.references <= MAX_REFERENCES:
        raise InvalidArgument(
            f"options.references must be between 0 and {MAX_REFERENCES}, got {options.references}"
        )
    for name in ("exploration", "success_threshold", "expansion_exponent", "lexicase_epsilon"):
        _check_finite(name, getattr(options, name))
    if options.exploration is not None and options.exploration < 0:
        raise InvalidArgument(f"options.exploration must be >= 0, got {options.exploration:g}")
    alpha = options.expansion_exponent
    if alpha is not None and not 0 < alpha <= 1:
        raise InvalidArgument(f"options.expansion_exponent must be in (0, 1], got {alpha:g}")
    if options.lexicase_epsilon is not None and options.lexicase_epsilon < 0:
        raise InvalidArgument(f"options.lexicase_epsilon must be >= 0, got {options.lexicase_epsilon:g}")
    for index, name in enumerate(options.objectives):
        if name not in OBJECTIVES:
            raise InvalidArgument(
                f"options.objectives[{index}]: unknown objective {name!r}; "
                f"valid objectives: {', '.join(sorted(OBJECTIVES))}"
            )
