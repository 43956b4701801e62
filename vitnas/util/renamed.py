"""Names vitnas has changed, and the old spellings it still reads for one release.

vitnas 0.1 called the multiply-accumulates it counts "flops" in the files a search
writes (``best.json``, ``results.jsonl``, ``search.json``, ``state.json``, ``pareto.json``),
in budgets (``max_flops``) and on the command line (``--flops``), while an export's
``config.json`` said ``macs`` for the same number. Everything new says ``macs``; this
module is the one place that knows the old names, so that files written before still
load, and scripts that pass the old option or keyword still run, with a note to move on.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from typing import Any, Mapping

__all__ = ["RENAMED_KEYS", "RenamedFlag", "renamed_value", "take_renamed", "upgraded"]

# old key -> new key, in every JSON object vitnas wrote before the rename (choices, records, budgets, settings)
RENAMED_KEYS = {"flops": "macs", "max_flops": "max_macs"}


def upgraded(data: Mapping[str, Any], renames: Mapping[str, str] = RENAMED_KEYS) -> dict[str, Any]:
    """A copy of `data` with each old key under its new name, nested objects included.

    Files are read silently: their writer cannot change them, and they stay readable.
    A key present under both names keeps the new one.
    """
    result: dict[str, Any] = {}
    for key, value in data.items():
        new = renames.get(key, key)
        if new != key and new in data:
            continue
        result[new] = upgraded(value, renames) if isinstance(value, Mapping) else value
    return result


def renamed_value(new_value: Any, old_value: Any, old: str, new: str, where: str, error: type[Exception]) -> Any:
    """The value of a renamed keyword argument: `new_value`, or `old_value` (with a DeprecationWarning) when given.

    For a function whose keyword `new` was called `old` before (``budgets_from_limits(flops=...)``
    is now ``macs=``), so that callers of the old name keep working for one release.

    Raises:
        `error`: both names were given a value.
    """
    if old_value is None:
        return new_value
    if new_value is not None:
        raise error(f"{where}: {old}= is the old name of {new}=; give only {new}=")
    warnings.warn(f"{where}: {old}= is now {new}= (the old name goes in the next release)", DeprecationWarning,
                  stacklevel=3)
    return old_value


def take_renamed(options: dict[str, Any], old: str, new: str, where: str, error: type[Exception]) -> None:
    """Moves keyword `old` of ``**options`` to `new` in place (with a DeprecationWarning); see `renamed_value`."""
    if old in options:
        value = renamed_value(options.get(new), options.pop(old), old, new, where, error)
        options[new] = value


class RenamedFlag(argparse.Action):
    """A command-line option under its old name: stores into the new one's ``dest`` and says so on stderr.

    Hidden from ``--help`` (``help=argparse.SUPPRESS``); the new name is the one documented.
    Use: ``parser.add_argument("--flops", dest="macs", action=RenamedFlag, new="--macs", type=..., help=SUPPRESS)``.
    """

    def __init__(self, option_strings: list[str], dest: str, new: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, **kwargs)
        self.new = new

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        print(f"{parser.prog}: note: {option_string} is now {self.new} (the old name goes in the next release)",
              file=sys.stderr)
        setattr(namespace, self.dest, values)
