"""Reference picking, shared by every strategy.

ASI-Arch shows the researcher a parent together with a few other experiments
drawn from the next tier of the leaderboard: `candidate_sample_from_range(11,
50, 4)` in GAIR-NLP/ASI-Arch, i.e. 4 uniform draws from fitness ranks 11-50.
We do the same for every strategy, with the range and count configurable, so
the context the researcher sees does not depend on how the parent was chosen.
"""

from __future__ import annotations

import itertools
import random

from asiarch.selector.population import (
    DEFAULT_PARENT_POOL,
    DEFAULT_REFERENCE_POOL_END,
    DEFAULT_REFERENCES,
    Options,
    Population,
)


def pick_references(
    population: Population, parent_id: str, rng: random.Random, options: Options
) -> tuple[str, ...]:
    """Reference ids for one parent, best-ranked first, never the parent itself.

    Draws `references` (default 4) ids uniformly without replacement from ranks
    parent_pool+1..reference_pool_end (default 11-50) of `ranked_all()`, so
    reference_only candidates may appear. When that range holds fewer than
    asked (a small population), the rest are the best-ranked candidates not yet
    taken, because a strong example is more useful than none; the result is
    shorter only when the population itself runs out. (If parent_pool is raised
    past reference_pool_end's default of 50 without setting it, the range is
    empty and every reference comes from that fill.)
    """
    count = options.references if options.references is not None else DEFAULT_REFERENCES
    if count == 0:
        return ()
    parent_pool = options.parent_pool if options.parent_pool is not None else DEFAULT_PARENT_POOL
    end = options.reference_pool_end if options.reference_pool_end is not None else DEFAULT_REFERENCE_POOL_END
    # Ranks are 1-based: ranks parent_pool+1..end are positions parent_pool..end-1.
    window = [c for c in population.ranked_all()[parent_pool:end] if c.id != parent_id]
    chosen = rng.sample(window, min(count, len(window)))
    if len(chosen) < count:
        taken = {c.id for c in chosen} | {parent_id}
        fill = (c for c in population.ranked_all() if c.id not in taken)
        chosen.extend(itertools.islice(fill, count - len(chosen)))
    return tuple(c.id for c in sorted(chosen, key=lambda c: population.rank(c.id)))
