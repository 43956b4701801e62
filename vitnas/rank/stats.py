"""How truly one ranking of archs (inherited accuracies) follows another (stand-alone ones): pure numpy and scipy.

Kendall tau-b and Spearman rho over every arch, the overlap of the two top-k sets, and
the regret of picking by the supernet under MACs budgets; with several stand-alone seeds,
the tau between the seeds themselves (the ceiling any supernet can reach). The benchmarks
read these too (benchmarks/ranking*.py).
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from vitnas.errors import RankCheckError

__all__ = ["BANDS", "TOP_K", "RankStatistics", "rank_statistics"]

TOP_K = 5  # the top-k overlap reported
BANDS = 3  # MACs bands (equal numbers of archs, cheapest first) whose own taus are reported


@dataclass(frozen=True)
class RankStatistics:
    """How well inherited accuracies rank archs against stand-alone ones (see `rank_statistics`)."""

    kendall_tau: float  # tau-b; NaN when either ranking is constant
    spearman_rho: float  # NaN when either ranking is constant
    top_k: int  # k of the overlap: min(5, number of archs)
    top_k_overlap: int  # archs in both top-k sets
    regret: float  # mean over the MACs budgets, in accuracy (0.01 = one point)
    regret_max: float  # worst budget
    budgets: tuple[dict[str, Any], ...]  # per budget: max_macs, candidates, supernet_pick, best, regret
    seed_tau: float = math.nan  # mean Kendall tau between the stand-alone seeds: the ceiling (NaN: one seed)
    band_tau: tuple[float, ...] = ()  # Kendall tau within each MACs band, cheapest band first
    band_seed_tau: tuple[float, ...] = ()  # the seeds' tau within each band (empty: one seed)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["budgets"] = list(self.budgets)
        data["band_tau"], data["band_seed_tau"] = list(self.band_tau), list(self.band_seed_tau)
        return {key: _none_for_nan(value) for key, value in data.items()}


def _none_for_nan(value: Any) -> Any:
    """JSON has no NaN: a statistic that does not exist (a constant ranking, one seed) is null."""
    if isinstance(value, list):
        return [_none_for_nan(item) for item in value]
    return None if isinstance(value, float) and math.isnan(value) else value


def rank_statistics(
    inherited: Sequence[float],
    standalone: Sequence[float],
    macs: Sequence[float],
    budgets: Sequence[float] | None = None,
    k: int = TOP_K,
    seeds: Sequence[Sequence[float]] | None = None,
) -> RankStatistics:
    """Rank agreement of inherited vs stand-alone accuracies of the same archs.

    - Kendall tau-b and Spearman rho: `scipy.stats.kendalltau` / `spearmanr` (ties handled
      by tau-b and by average ranks). NaN when either list is constant.
    - Top-k overlap: archs among the k best by both accuracies; ties within a ranking are
      broken by fewer MACs, then by position (a cheaper arch is the better pick at equal accuracy).
    - Regret of picking by the supernet, under each MACs budget B (default: one budget, the
      largest MACs): among the archs with MACs <= B, the best stand-alone accuracy minus the
      stand-alone accuracy of the arch the supernet ranks first there (an inherited-accuracy
      tie counts the mean over the tied archs: the expected value of a random tie-break).
      It is >= 0, and 0 when the supernet's pick is truly the best at that budget.
      ``regret`` is the mean over the budgets that admit at least two archs (with one there
      is no choice to get wrong), ``regret_max`` the largest.
    - With `seeds` (each seed's stand-alone accuracies, in arch order): ``seed_tau``, the
      mean Kendall tau over pairs of seeds, how well stand-alone training agrees with itself.
    - ``band_tau`` (and ``band_seed_tau`` with seeds): the same taus within each of `BANDS`
      bands of the archs sorted by MACs (equal numbers of archs, cheapest band first; none
      with fewer than two archs a band). The overall tau rewards getting the MACs order
      right, which the accuracies mostly follow; within a band it shows where the supernet
      ranks archs of similar cost, the choice a budgeted search actually makes.

    Raises:
        RankCheckError: lists of different lengths, or fewer than two archs.
    """
    inherited, standalone, macs = (np.asarray(values, dtype=np.float64) for values in (inherited, standalone, macs))
    if not len(inherited) == len(standalone) == len(macs) or len(inherited) < 2:
        raise RankCheckError(f"rank statistics: need equal-length lists of at least 2 archs, got "
                             f"{len(inherited)}, {len(standalone)}, {len(macs)}")
    from scipy import stats

    with warnings.catch_warnings():  # a constant ranking: NaN, reported as such
        warnings.simplefilter("ignore")
        tau = float(stats.kendalltau(inherited, standalone).statistic)
        rho = float(stats.spearmanr(inherited, standalone).statistic)
    top = min(k, len(inherited))
    overlap = len(set(_top_k(inherited, macs, top)) & set(_top_k(standalone, macs, top)))
    per_budget = [row for limit in (budgets if budgets is not None else [macs.max()])
                  if (row := _regret_at(inherited, standalone, macs, float(limit))) is not None]
    regrets = [row["regret"] for row in per_budget]
    bands = _bands(macs)
    return RankStatistics(tau, rho, top, overlap, float(np.mean(regrets)) if regrets else math.nan,
                          float(np.max(regrets)) if regrets else math.nan, tuple(per_budget), _seed_tau(seeds),
                          tuple(_kendall(inherited[band], standalone[band]) for band in bands),
                          tuple(_seed_tau([np.asarray(seed)[band] for seed in seeds]) for band in bands)
                          if seeds is not None and len(seeds) > 1 else ())


def _bands(macs: np.ndarray) -> list[np.ndarray]:
    """Positions of the archs in each of `BANDS` MACs bands (ties by position); none under two archs a band."""
    if len(macs) < 2 * BANDS:
        return []
    order = sorted(range(len(macs)), key=lambda i: (macs[i], i))
    return [np.asarray(band) for band in np.array_split(order, BANDS)]


def _kendall(first: Sequence[float], second: Sequence[float]) -> float:
    """Kendall tau-b (NaN when either list is constant)."""
    from scipy import stats

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(stats.kendalltau(first, second).statistic)


def _seed_tau(seeds: Sequence[Sequence[float]] | None) -> float:
    """Mean Kendall tau-b over pairs of seeds' accuracy lists (NaN with fewer than two seeds or constant lists)."""
    if seeds is None or len(seeds) < 2:
        return math.nan
    return float(np.mean([_kendall(seeds[a], seeds[b]) for a in range(len(seeds)) for b in range(a + 1, len(seeds))]))


def _top_k(accuracy: np.ndarray, macs: np.ndarray, k: int) -> list[int]:
    """Positions of the k best: higher accuracy first, then fewer MACs, then earlier position."""
    return sorted(range(len(accuracy)), key=lambda i: (-accuracy[i], macs[i], i))[:k]


def _regret_at(inherited: np.ndarray, standalone: np.ndarray, macs: np.ndarray, limit: float) -> dict[str, Any] | None:
    """The regret row of one MACs budget (None when fewer than two archs fit it: nothing to choose)."""
    admitted = np.flatnonzero(macs <= limit)
    if len(admitted) < 2:
        return None
    picks = admitted[inherited[admitted] == inherited[admitted].max()]
    best = admitted[np.argmax(standalone[admitted])]
    regret = float(standalone[best] - standalone[picks].mean())
    return {"max_macs": limit, "candidates": len(admitted), "supernet_pick": [int(i) for i in picks],
            "best": int(best), "regret": max(regret, 0.0)}
