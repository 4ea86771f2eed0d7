"""select_parents: the entry point, references, and the fitness-based strategies (asi-arch, uct, hgm)."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import replace

import pytest

from asiarch.selector.population import Candidate, CandidateMetrics, Options
from asiarch.selector.strategies import NextAction, Selection, list_strategies, select_parents

STRATEGIES = ["asi-arch", "hgm", "lexicase", "pareto", "random", "uct"]


def cand(cid: str, fitness: float = 1.0, parent: str | None = None, **kwargs: object) -> Candidate:
    return Candidate(id=cid, parent_id=parent, fitness=fitness, **kwargs)  # type: ignore[arg-type]


def population(n: int = 30) -> list[Candidate]:
    """A binary-heap lineage with distinct fitness and metrics in conflict, so every strategy has choice."""
    return [
        cand(
            f"c{i}",
            fitness=1.0 + ((i * 7) % n) / n,
            parent=f"c{(i - 1) // 2}" if i else None,
            metrics=CandidateMetrics(
                val_loss=2.0 + ((i * 11) % n) / n,
                benchmarks={"mqar": ((i * 13) % n) / n},
                tokens_per_second=1000.0 + (i * 17) % n,
                parameters=1000 + (i * 19) % n,
            ),
        )
        for i in range(n)
    ]


def parents(selection: Selection) -> list[str]:
    return [choice.parent_id for choice in selection.choices]


def test_list_strategies_names_all_six_sorted_and_described() -> None:
    infos = list_strategies()
    assert [info.name for info in infos] == STRATEGIES
    for info in infos:
        assert info.description
        assert "\n" not in info.description
        assert info.source
        assert "references" in info.options


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_same_seed_same_selection_and_seeds_matter(strategy: str) -> None:
    pop = population()
    first = select_parents(strategy, pop, 3, 42, Options())
    assert select_parents(strategy, pop, 3, 42, Options()) == first
    assert first.strategy == strategy
    outcomes = {
        (tuple(parents(s)), tuple(c.reference_ids for c in s.choices))
        for s in (select_parents(strategy, pop, 3, seed, Options()) for seed in range(20))
    }
    assert len(outcomes) > 1


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_parents_are_distinct_eligible_and_references_exclude_the_parent(strategy: str) -> None:
    pop = population()
    # The best-fitness candidate is reference_only: never a parent, yet a fine reference.
    pop[5] = cand("c5", fitness=5.0, parent="c2", reference_only=True, metrics=pop[5].metrics)
    seen_as_reference = False
    for seed in range(30):
        selection = select_parents(strategy, pop, 5, seed, Options(references=30))
        ids = parents(selection)
        assert len(ids) == 5
        assert len(set(ids)) == 5
        assert "c5" not in ids
        for choice in selection.choices:
            assert choice.parent_id not in choice.reference_ids
            assert len(set(choice.reference_ids)) == len(choice.reference_ids) == 29  # all but the parent
            assert choice.reason
            seen_as_reference |= "c5" in choice.reference_ids
    assert seen_as_reference


def test_references_come_from_ranks_11_to_50() -> None:
    pop = [cand(f"c{i}", fitness=100.0 - i) for i in range(60)]  # c0 is rank 1, c59 rank 60
    window = {f"c{i}" for i in range(10, 50)}
    drawn: set[str] = set()
    for seed in range(50):
        selection = select_parents("random", pop, 2, seed, Options())
        for choice in selection.choices:
            assert len(choice.reference_ids) == 4
            assert set(choice.reference_ids) <= window
            ranks = [int(r[1:]) for r in choice.reference_ids]
            assert ranks == sorted(ranks)  # reported best-ranked first
            drawn.update(choice.reference_ids)
    assert len(drawn) > 30  # uniform over the window, not its top


def test_references_fill_from_the_best_when_the_range_is_short() -> None:
    pop = [cand(f"c{i}", fitness=100.0 - i) for i in range(13)]  # ranks 11-13 hold 3 candidates
    selection = select_parents("uct", pop, 1, 0, Options(references=6))
    choice = selection.choices[0]
    assert choice.parent_id == "c0"  # all unvisited: highest fitness first
    # c10, c11, c12 from the window, then the best-ranked others, never c0 itself.
    assert choice.reference_ids == ("c1", "c2", "c3", "c10", "c11", "c12")


def test_references_can_be_turned_off_and_limited_by_the_population() -> None:
    pop = [cand("a", 2.0), cand("b", 1.0)]
    assert select_parents("asi-arch", pop, 1, 0, Options(references=0)).choices[0].reference_ids == ()
    selection = select_parents("asi-arch", pop, 2, 0, Options(references=10))
    assert [c.reference_ids for c in selection.choices] == [("b",), ("a",)]


def test_references_respect_custom_ranges() -> None:
    pop = [cand(f"c{i}", fitness=100.0 - i) for i in range(40)]
    options = Options(parent_pool=3, reference_pool_end=6, references=3)
    for seed in range(20):
        for choice in select_parents("asi-arch", pop, 1, seed, options).choices:
            assert set(choice.reference_ids) <= {"c3", "c4", "c5"}
            assert len(choice.reference_ids) == 3


# --- asi-arch -----------------------------------------------------------------


def test_asi_arch_draws_uniformly_from_the_top_ten() -> None:
    pop = population()
    top10 = {c.id for c in sorted(pop, key=lambda c: -c.fitness)[:10]}
    counts: Counter[str] = Counter()
    for seed in range(200):
        selection = select_parents("asi-arch", pop, 1, seed, Options())
        choice = selection.choices[0]
        assert choice.parent_id in top10
        assert choice.score == next(c.fitness for c in pop if c.id == choice.parent_id)
        counts[choice.parent_id] += 1
    assert set(counts) == top10
    assert max(counts.values()) < 45  # about 20 each if uniform


def test_asi_arch_grows_the_pool_to_k_and_reports_best_first() -> None:
    pop = [cand(f"c{i}", fitness=100.0 - i) for i in range(20)]
    selection = select_parents("asi-arch", pop, 3, 1, Options(parent_pool=2))
    assert parents(selection) == ["c0", "c1", "c2"]
    assert "ranks 1-3" in selection.choices[0].reason
    for seed in range(20):
        selection = select_parents("asi-arch", pop, 2, seed, Options(parent_pool=4))
        ids = parents(selection)
        assert set(ids) <= {"c0", "c1", "c2", "c3"}
        assert ids == sorted(ids, key=lambda cid: int(cid[1:]))


# --- random ---------------------------------------------------------------------


def test_random_draws_every_selectable_candidate_about_equally_and_never_a_reference_only_one() -> None:
    pop = population(20)
    # The fittest and the least fit candidate are reference_only: never parents, whatever their fitness.
    by_fitness = sorted(pop, key=lambda c: c.fitness)
    excluded = {by_fitness[0].id, by_fitness[-1].id}
    pop = [replace(c, reference_only=True) if c.id in excluded else c for c in pop]
    selectable = {c.id for c in pop} - excluded
    draws = 3000
    counts: Counter[str] = Counter()
    for seed in range(draws):
        selection = select_parents("random", pop, 2, seed, Options())
        counts.update(parents(selection))
        for choice in selection.choices:
            assert choice.score == next(c.fitness for c in pop if c.id == choice.parent_id)
            assert "uniform draw from all 18 selectable candidates" in choice.reason
    assert set(counts) == selectable
    expected = 2 * draws / len(selectable)  # 333 each
    # Binomial sd about 17: 5 sd either way. A fitness-biased draw (asi-arch: the top 10 only) fails.
    assert all(abs(n - expected) < 90 for n in counts.values()), counts


def test_random_ignores_fitness_where_asi_arch_does_not() -> None:
    pop = [cand(f"c{i}", fitness=100.0 - i) for i in range(40)]  # asi-arch draws from c0-c9 only
    drawn = {p for seed in range(200) for p in parents(select_parents("random", pop, 1, seed, Options()))}
    assert len(drawn) > 30 and any(int(p[1:]) >= 10 for p in drawn)


# --- uct ------------------------------------------------------------------------


def test_uct_picks_unexpanded_nodes_first() -> None:
    pop = population()
    expanded = {c.parent_id for c in pop if c.parent_id}
    for seed in range(20):
        selection = select_parents("uct", pop, 1, seed, Options())
        assert selection.choices[0].parent_id not in expanded
        assert selection.choices[0].score == math.inf
    # Ties among unexpanded nodes go to the fitter one.
    best_leaf = max((c for c in pop if c.id not in expanded), key=lambda c: c.fitness)
    assert parents(select_parents("uct", pop, 1, 0, Options())) == [best_leaf.id]


def test_uct_scores_visited_nodes_by_clade_mean_plus_bonus() -> None:
    # Leaves are reference_only, so only expanded nodes compete.
    pop = [
        cand("r", 1.0),
        cand("a", 2.0, "r"),
        cand("b", 3.0, "r", reference_only=True),
        cand("c", 4.0, "a", reference_only=True),
    ]
    selection = select_parents("uct", pop, 2, 0, Options())
    n_total = 3  # a, b and c are non-roots
    score_r = 2.5 + math.sqrt(2) * math.sqrt(math.log(n_total) / 2)  # Q over r, a, b, c
    score_a = 3.0 + math.sqrt(2) * math.sqrt(math.log(n_total) / 1)  # Q over a, c
    assert parents(selection) == ["a", "r"]
    assert [c.score for c in selection.choices] == pytest.approx([score_a, score_r])
    assert "n = 1" in selection.choices[0].reason
    assert "N = 3" in selection.choices[0].reason
    # Without exploration the higher clade mean still wins; with a big c the less-expanded one does.
    assert parents(select_parents("uct", pop, 1, 0, Options(exploration=0.0))) == ["a"]
    pop[1] = cand("a", 0.0, "r")
    pop[3] = cand("c", 0.0, "a", reference_only=True)  # Q(a) = 0 < Q(r) = 1
    assert parents(select_parents("uct", pop, 1, 0, Options(exploration=0.0))) == ["r"]
    assert parents(select_parents("uct", pop, 1, 0, Options(exploration=10.0))) == ["a"]


def test_uct_with_one_expansion_uses_the_clade_mean_alone() -> None:
    pop = [cand("r", 1.0), cand("a", 3.0, "r", reference_only=True)]
    choice = select_parents("uct", pop, 1, 0, Options()).choices[0]
    assert choice.parent_id == "r"
    assert choice.score == pytest.approx(2.0)  # N = 1: ln N taken as 0


# --- hgm ------------------------------------------------------------------------


def two_clades() -> list[Candidate]:
    """Roots 'good' and 'poor' of equal fitness and clade size; only the roots are eligible."""
    pop = [cand("good", 0.5), cand("poor", 0.5)]
    pop += [cand(f"g{i}", f, "good", reference_only=True) for i, f in enumerate([0.9, 0.9, 0.9, 0.1])]
    pop += [cand(f"p{i}", f, "poor", reference_only=True) for i, f in enumerate([0.9, 0.1, 0.1, 0.1])]
    return pop


def test_hgm_prefers_the_clade_with_more_successes_but_samples() -> None:
    counts = Counter(
        select_parents("hgm", two_clades(), 1, seed, Options()).choices[0].parent_id for seed in range(300)
    )
    # theta_good ~ Beta(4, 3), theta_poor ~ Beta(2, 5): poor wins about 1 time in 9.
    assert counts["good"] > 220
    assert counts["poor"] >= 5
    choice = select_parents("hgm", two_clades(), 2, 0, Options()).choices[0]
    assert 0.0 <= choice.score <= 1.0
    # Default threshold: 65th percentile of (0.1 x4, 0.5 x2, 0.9 x4) = 0.84, clipped to
    # 0.1 + 0.8 * (0.9 - 0.1) = 0.74, the top of [20%, 80%] of the observed range.
    assert "threshold 0.74" in choice.reason


def test_hgm_default_threshold_is_scale_free() -> None:
    # ASI-Arch's fitness lies in [0, 3]: an absolute [0.2, 0.8] clip would count every
    # candidate as a success there. The relative clip gives the same answer at any scale.
    scaled = [replace(c, fitness=3 * c.fitness) for c in two_clades()]
    for seed in range(50):
        plain = select_parents("hgm", two_clades(), 1, seed, Options()).choices[0]
        tripled = select_parents("hgm", scaled, 1, seed, Options()).choices[0]
        assert (plain.parent_id, plain.score) == (tripled.parent_id, tripled.score)


def test_hgm_success_threshold_option_changes_who_succeeds() -> None:
    # With every member above the threshold the two clades are identical: a coin flip.
    counts = Counter(
        select_parents("hgm", two_clades(), 1, seed, Options(success_threshold=0.0)).choices[0].parent_id
        for seed in range(300)
    )
    assert 110 < counts["good"] < 190
    choice = select_parents("hgm", two_clades(), 1, 0, Options(success_threshold=0.0)).choices[0]
    assert "Beta(1 + 5, 1 + 0)" in choice.reason


def test_hgm_advises_reevaluation_until_evaluations_catch_up() -> None:
    pop = [cand(f"c{i}", 0.5) for i in range(10)]
    selection = select_parents("hgm", pop, 1, 0, Options())
    assert selection.next_action is NextAction.REEVALUATE
    assert selection.next_action_reason == "10 evaluations^0.6 = 3.98 < 10 nodes: re-evaluate"
    # 0 evaluations count as 1: 9 * 5 + 1 = 46, 46^0.6 = 9.95 < 10.
    pop = [cand(f"c{i}", 0.5, evaluations=5) for i in range(9)] + [cand("z", 0.5, evaluations=0)]
    selection = select_parents("hgm", pop, 1, 0, Options())
    assert selection.next_action is NextAction.REEVALUATE
    assert selection.next_action_reason == "46 evaluations^0.6 = 9.95 < 10 nodes: re-evaluate"
    # 48^0.6 = 10.20 >= 10.
    pop[-1] = cand("z", 0.5, evaluations=3)
    selection = select_parents("hgm", pop, 1, 0, Options())
    assert selection.next_action is NextAction.EXPAND
    assert selection.next_action_reason == "48 evaluations^0.6 = 10.20 >= 10 nodes: expand"
    # alpha = 1: one evaluation per node is enough.
    selection = select_parents("hgm", pop[:3], 1, 0, Options(expansion_exponent=1.0))
    assert selection.next_action is NextAction.EXPAND


def test_only_hgm_gives_advice() -> None:
    for strategy in ("asi-arch", "uct", "lexicase", "pareto", "random"):
        selection = select_parents(strategy, population(), 1, 0, Options())
        assert selection.next_action is NextAction.NONE
        assert selection.next_action_reason == ""
