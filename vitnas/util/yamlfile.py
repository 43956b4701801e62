"""Reading YAML (space files, recipes, checkpoint copies of both) strictly, with one-line errors.

PyYAML's `safe_load` silently keeps the last of two equal keys in a mapping, so a
recipe that sets ``epochs`` twice trains with whichever came last. Every YAML vitnas
reads goes through `parse_yaml`, which refuses duplicate keys and reports any problem
as one line naming the source and the line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from vitnas.errors import VitnasError

__all__ = ["parse_yaml", "read_yaml"]


class _StrictLoader(yaml.SafeLoader):
    """A safe loader that refuses a mapping holding the same key twice."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def parse_yaml(text: str, where: str, error: type[VitnasError] = VitnasError) -> Any:
    """The data of YAML `text`; any problem is an `error` naming `where` and the line.

    Raises:
        error: invalid YAML or a duplicate key, e.g. ``r.yaml: not valid YAML (duplicate key 'epochs' at line 7)``.
    """
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as problem:
        mark = getattr(problem, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise error(f"{where}: not valid YAML ({getattr(problem, 'problem', None) or problem}{at})") from None


def read_yaml(path: str | Path, error: type[VitnasError] = VitnasError) -> Any:
    """`parse_yaml` of a file; an unreadable file is an `error` naming it."""
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as problem:
        reason = getattr(problem, "strerror", None) or str(problem)
        raise error(f"{path}: cannot be read ({reason})") from None
    return parse_yaml(text, str(path), error)
