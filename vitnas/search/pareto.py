"""The Pareto front of a search: the candidates no other beats on both accuracy and cost.

A pure function over plain result rows, so the run directory's `pareto.json`, the plot
and the tests all compute the same front from the same `results.jsonl` rows.
"""

from __future__ import annotations

from itertools import groupby
from typing import Any, Mapping, Sequence, TypeVar

__all__ = ["pareto_front"]

Point = TypeVar("Point", bound=Mapping[str, Any])


def pareto_front(points: Sequence[Point], cost_key: str = "macs", accuracy_key: str = "accuracy") -> list[Point]:
    """The non-dominated points: higher accuracy is better, lower cost is better.

    A point is dominated when another is at least as accurate and at most as costly,
    and strictly better in one of the two. Points equal in both are all kept (neither
    dominates the other).

    Args:
        points: rows holding at least `accuracy_key` and `cost_key` (e.g. results.jsonl rows).
        cost_key: ``"latency_ms"`` when a device profile is given, else ``"macs"``.
        accuracy_key: the field to maximise.

    Returns:
        The front, cheapest first (ties in cost keep their input order).
    """
    ordered = sorted(points, key=lambda p: (p[cost_key], -p[accuracy_key]))
    front: list[Point] = []
    best_cheaper = float("-inf")  # highest accuracy among strictly cheaper points
    for _, group in groupby(ordered, key=lambda p: p[cost_key]):
        members = list(group)
        top = members[0][accuracy_key]  # sorted: the group's most accurate comes first
        if top > best_cheaper:
            front.extend(p for p in members if p[accuracy_key] == top)
            best_cheaper = top
    return front
