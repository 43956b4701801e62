"""Strict checks of config fields, worded one way: ``section.field: expected ..., got ...``.

Settings reach vitnas from YAML, JSON and the command line, where ``true`` is a bool and
``32.0`` a float, and Python's ``bool`` is an ``int``: ``isinstance(x, int)`` alone lets
``True`` through as 1. Every config validator (data, recipe, search, fitness, run,
rank-check, latency, export and fine-tune settings) checks its numbers here, so each
refuses the same values and a user meets one form of error whichever file or flag is
wrong. Each check raises the caller's error class, so a bad recipe still raises
RecipeError and a bad search setting SearchError.

Standard library only: the CLIs validate with it before torch is imported.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

__all__ = ["is_int", "is_number", "require_bool", "require_int", "require_number", "require_positive_numbers"]


def is_int(value: Any) -> bool:
    """Whether `value` is an integer, a bool not counting as one."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """Whether `value` is an int or a float, a bool not counting as one."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def require_int(where: str, value: Any, error: type[Exception], *, low: int = 1, optional: bool = False,
                what: str | None = None) -> Any:
    """`value`, checked to be an integer >= `low` (or None when `optional`); raises `error` otherwise.

    Args:
        where: the field as the user wrote it: ``data.search_images``, ``--workers``.
        value: the value given.
        error: the exception class the caller's users expect (RecipeError, SearchError, ...).
        low: the smallest allowed value (1: "a positive integer", 0: "a non-negative integer").
        optional: None is allowed (the error then says "or None").
        what: the expected value in words, replacing the derived ones (say, "a positive number of images").
    """
    if value is None and optional:
        return value
    if not is_int(value) or value < low:
        raise error(f"{where}: expected {what or _int_words(low, optional)}, got {value!r}")
    return value


def require_number(where: str, value: Any, error: type[Exception], *, above: float | None = None,
                   at_least: float | None = None, at_most: float | None = None, below: float | None = None,
                   optional: bool = False, what: str | None = None) -> Any:
    """`value`, checked to be a finite number inside the bounds given (or None when `optional`).

    Args:
        where, error, optional, what: as for `require_int`.
        above, at_least: the lower bound, open or closed (at most one of them).
        at_most, below: the upper bound, closed or open (at most one of them).
    """
    if value is None and optional:
        return value
    fits = (is_number(value) and math.isfinite(value) and (above is None or value > above)
            and (at_least is None or value >= at_least) and (at_most is None or value <= at_most)
            and (below is None or value < below))
    if not fits:
        words = what or _number_words(above, at_least, at_most, below) + (" or None" if optional else "")
        raise error(f"{where}: expected {words}, got {value!r}")
    return value


def require_positive_numbers(where: str, values: Iterable[Any], error: type[Exception]) -> tuple[float, ...]:
    """`values` as floats, each checked to be a finite number above 0 (budgets given as lists: ``--latency-ms 4,8``)."""
    values = tuple(values)
    for value in values:
        require_number(where, value, error, above=0, what="positive numbers")
    return tuple(float(value) for value in values)


def require_bool(where: str, value: Any, error: type[Exception]) -> bool:
    """`value`, checked to be a bool (YAML's ``true`` / ``false``; not 0, 1 or ``"yes"``)."""
    if not isinstance(value, bool):
        raise error(f"{where}: expected true or false, got {value!r}")
    return value


def _int_words(low: int, optional: bool) -> str:
    words = {1: "a positive integer", 0: "a non-negative integer"}.get(low, f"an integer >= {low}")
    return words + (" or None" if optional else "")


def _number_words(above: float | None, at_least: float | None, at_most: float | None, below: float | None) -> str:
    """"a positive number", "a non-negative number", "a number in (0, 1]", ... for the bounds given."""
    if at_most is None and below is None:
        if above == 0:
            return "a positive number"
        if at_least == 0:
            return "a non-negative number"
    if above is None and at_least is None and at_most is None and below is None:
        return "a finite number"
    left = "[" if at_least is not None else "("
    right = "]" if at_most is not None else ")"  # an open end at infinity too
    low = _bound(above if above is not None else at_least, "-inf")
    high = _bound(at_most if at_most is not None else below, "inf")
    return f"a number in {left}{low}, {high}{right}"


def _bound(value: float | None, infinite: str) -> str:
    return infinite if value is None else f"{value:g}"
