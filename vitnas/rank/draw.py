"""Drawing archs spread over a space's MACs range: equal-width bins of log-MACs, the extremes always in."""

from __future__ import annotations

import numpy as np

from vitnas.errors import RankCheckError
from vitnas.space.arch import Arch
from vitnas.space.cost import count_macs
from vitnas.space.space import SearchSpace
from vitnas.util.fields import require_int

__all__ = ["bin_of", "macs_bins", "stratified_archs"]

_MUTATION_PROB = 0.2  # how far a draw aimed at a sparse bin moves from its neighbour's arch


def macs_bins(space: SearchSpace, bins: int) -> np.ndarray:
    """The ``bins + 1`` edges of equal-width log-MACs bins from the smallest arch to the largest.

    Log, not linear: MACs grow multiplicatively with width, depth and token count, and a
    uniform draw piles up at the cheap end; equal log-widths give every scale its share.

    Raises:
        RankCheckError: `bins` is not a positive integer, or the space has one MACs value and `bins` > 1.
    """
    require_int("bins", bins, RankCheckError)
    low, high = count_macs(space, space.smallest()), count_macs(space, space.largest())
    if high <= low and bins > 1:
        raise RankCheckError(f"bins: every arch of space {space.name} has {low} MACs; there is no range to spread "
                             "over (use bins=1)")
    edges = np.exp(np.linspace(np.log(low), np.log(max(high, low)), bins + 1))
    edges[0], edges[-1] = low, high  # exact ends: the smallest and largest archs fall inside
    return edges


def bin_of(edges: np.ndarray, macs: int) -> int:
    return int(np.clip(np.searchsorted(edges, macs, side="right") - 1, 0, len(edges) - 2))


def stratified_archs(space: SearchSpace, count: int, bins: int, rng: np.random.Generator,
                     max_draws: int | None = None) -> list[Arch]:
    """`count` distinct archs spread over `bins` log-MACs bins (`macs_bins`), cheapest bins first.

    The smallest and the largest arch are offered first, so the draw spans the whole range.
    Every other draw is uniform over the space; the rest mutate an arch of the bin nearest
    to a bin still short, since the far ends are rare under a uniform draw. Within a bin,
    the first archs to land there are kept.

    Raises:
        RankCheckError: `bins` exceeds `count`, or a bin is still short after `max_draws`
            draws (default: 200 per arch), naming the bin and its MACs range.
    """
    edges = macs_bins(space, bins)
    if count < bins:
        raise RankCheckError(f"bins: {bins} bins need at least as many archs, got archs={count}")
    max_draws = 200 * count if max_draws is None else max_draws
    quotas = _quotas(count, bins)
    chosen: list[list[Arch]] = [[] for _ in range(bins)]
    seen: list[list[Arch]] = [[] for _ in range(bins)]  # every distinct arch drawn, by bin
    known: set[Arch] = set()
    for draw in range(-2, max_draws):
        short = [b for b in range(bins) if len(chosen[b]) < quotas[b]]
        if not short:
            break
        if draw < 0:
            arch = space.smallest() if draw == -2 else space.largest()
        else:
            arch = space.sample(rng) if draw % 2 == 0 else _toward(space, int(rng.choice(short)), seen, rng)
        where = bin_of(edges, count_macs(space, arch))
        if arch not in known:
            known.add(arch)
            seen[where].append(arch)
            if len(chosen[where]) < quotas[where]:
                chosen[where].append(arch)
    short = [b for b in range(bins) if len(chosen[b]) < quotas[b]]
    if short:
        b = short[0]
        raise RankCheckError(f"MACs bin {b} ({edges[b] / 1e6:.3g}-{edges[b + 1] / 1e6:.3g} M MACs) holds "
                             f"{len(chosen[b])} of its {quotas[b]} archs after {max_draws} draws; use fewer bins "
                             "or more max_draws")
    return [arch for group in chosen for arch in group]


def _quotas(count: int, bins: int) -> list[int]:
    """Archs per bin: `count` spread evenly, the remainder one each to evenly spaced bins."""
    quotas = [count // bins] * bins
    extra = count % bins
    for i in range(extra):
        quotas[round((i + 0.5) * bins / extra - 0.5)] += 1
    return quotas


def _toward(space: SearchSpace, target: int, seen: list[list[Arch]], rng: np.random.Generator) -> Arch:
    """A mutation of a random arch from the drawn bin nearest to `target` (ties: the lower bin)."""
    source = min((b for b in range(len(seen)) if seen[b]), key=lambda b: (abs(b - target), b))
    parent = seen[source][int(rng.integers(len(seen[source])))]
    return space.mutate(parent, _MUTATION_PROB, rng)
