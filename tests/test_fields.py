"""The strict field checks every config validator shares (`vitnas.util.fields`)."""

from __future__ import annotations

import math

import pytest

from vitnas.util.fields import require_bool, require_int, require_number, require_positive_numbers


class _Refused(Exception):
    pass


@pytest.mark.parametrize("value, kwargs, message", [
    (0, {}, "section.field: expected a positive integer, got 0"),
    (True, {}, "section.field: expected a positive integer, got True"),
    (3.0, {}, "section.field: expected a positive integer, got 3.0"),
    ("3", {}, "section.field: expected a positive integer, got '3'"),
    (None, {}, "section.field: expected a positive integer, got None"),
    (-1, {"low": 0}, "section.field: expected a non-negative integer, got -1"),
    (3, {"low": 4}, "section.field: expected an integer >= 4, got 3"),
    (0, {"optional": True}, "section.field: expected a positive integer or None, got 0"),
    (0, {"what": "a positive number of images or null"},
     "section.field: expected a positive number of images or null, got 0"),
])
def test_require_int_refuses_in_one_line_naming_the_field(value, kwargs, message):
    with pytest.raises(_Refused) as caught:
        require_int("section.field", value, _Refused, **kwargs)
    assert str(caught.value) == message


def test_require_int_returns_what_it_accepts():
    assert require_int("f", 1, _Refused) == 1
    assert require_int("f", 0, _Refused, low=0) == 0
    assert require_int("f", None, _Refused, optional=True) is None


@pytest.mark.parametrize("value, bounds, words", [
    (0, {"above": 0}, "a positive number"),
    (-0.5, {"at_least": 0}, "a non-negative number"),
    (math.nan, {"above": 0}, "a positive number"),
    (math.inf, {"at_least": 0}, "a non-negative number"),
    (False, {"above": 0}, "a positive number"),
    (1.5, {"above": 0, "at_most": 1}, "a number in (0, 1]"),
    (1.0, {"at_least": 0, "below": 1}, "a number in [0, 1)"),
    (2, {"at_most": 1}, "a number in (-inf, 1]"),
    ("x", {}, "a finite number"),
])
def test_require_number_words_its_bounds(value, bounds, words):
    with pytest.raises(_Refused) as caught:
        require_number("where", value, _Refused, **bounds)
    assert str(caught.value) == f"where: expected {words}, got {value!r}"


def test_require_number_accepts_its_bounds_and_none_when_optional():
    assert require_number("f", 1, _Refused, above=0, at_most=1) == 1
    assert require_number("f", 0.0, _Refused, at_least=0, below=1) == 0.0
    assert require_number("f", None, _Refused, above=0, optional=True) is None
    with pytest.raises(_Refused, match=r"^f: expected a positive number or None, got 0$"):
        require_number("f", 0, _Refused, above=0, optional=True)


def test_require_positive_numbers_and_bool():
    assert require_positive_numbers("--latency-ms", [4, 8.5], _Refused) == (4.0, 8.5)
    with pytest.raises(_Refused, match=r"^--latency-ms: expected positive numbers, got -1$"):
        require_positive_numbers("--latency-ms", [4, -1], _Refused)
    assert require_bool("data.holdout", False, _Refused) is False
    with pytest.raises(_Refused, match=r"^data\.holdout: expected true or false, got 1$"):
        require_bool("data.holdout", 1, _Refused)
