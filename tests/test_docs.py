"""The user docs against the code they describe: docs/search_spaces.md and docs/recipes.md.

Conventions the docs follow, and these tests read:
- a key is documented by a row of a table whose header starts with ``| Key |``, its first
  cell one backticked key: dotted for recipe sections (`` `optimizer.lr` ``), ``stages[].``
  for the keys of any stage of a space (`` `stages[].token_reduction.blocks` ``);
- recipe tables have the columns Key | Type | Default | Meaning, space tables
  Key | Type | Required | Default | Meaning; a Default cell that is one backticked YAML
  literal is checked against the code;
- ``<!-- complete-example -->`` on the line before a fenced ```yaml block marks a complete
  file, which must load; ``<!-- error-example -->`` marks a broken one, followed by the
  exact line the CLI prints for it;
- every ``vitnas train RECIPE ... key=value`` command in the docs must load its recipe
  with those overrides (or, in an error example, fail with the line shown).
"""

from __future__ import annotations

import copy
import dataclasses
import re
import shlex
import types
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml

from vitnas import load_space
from vitnas.data import DataConfig
from vitnas.errors import SpaceError
from vitnas.space.spec import _PATCH_KEYS, _REDUCTION_KEYS, _STAGE_KEYS, _TOP_KEYS, REDUCERS, parse_space
from vitnas.train.recipe import Recipe, RecipeError, load_recipe

REPO = Path(__file__).resolve().parent.parent
SPACES_DOC = REPO / "docs" / "search_spaces.md"
RECIPES_DOC = REPO / "docs" / "recipes.md"


# -- reading the docs ----------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Block:
    marker: str | None  # "complete-example", "error-example", or None
    lang: str
    body: str


def _blocks(text: str) -> list[Block]:
    """The fenced code blocks of a Markdown text, in order, with the marker comment just above each."""
    blocks, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        fence = re.match(r"^```(\w*)\s*$", lines[i])
        if not fence:
            i += 1
            continue
        above = next((line.strip() for line in reversed(lines[:i]) if line.strip()), "")
        marker = re.fullmatch(r"<!--\s*([\w-]+)\s*-->", above)
        end = lines.index("```", i + 1)
        blocks.append(Block(marker.group(1) if marker else None, fence.group(1), "\n".join(lines[i + 1:end]) + "\n"))
        i = end + 1
    return blocks


def _key_rows(text: str, header: str = "| Key |") -> dict[str, list[str]]:
    """Key -> the row's other cells, for the rows of every table whose header starts with `header`."""
    rows: dict[str, list[str]] = {}
    in_table = False
    for line in text.splitlines():
        if line.startswith(header):
            in_table = True
            continue
        if not line.startswith("|"):
            in_table = False
            continue
        if not in_table or line.startswith("|---"):
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        key = re.fullmatch(r"`([^`]+)`", cells[0])
        assert key, f"row of a Key table without one backticked key: {line}"
        assert key.group(1) not in rows, f"key {key.group(1)} documented twice"
        rows[key.group(1)] = cells[1:]
    return rows


def _literal(cell: str) -> tuple[bool, Any]:
    """(True, value) when a table cell is exactly one backticked YAML literal."""
    match = re.fullmatch(r"`([^`]+)`", cell)
    return (True, yaml.safe_load(match.group(1))) if match else (False, None)


def _examples(text: str, marker: str) -> list[Block]:
    return [b for b in _blocks(text) if b.marker == marker]


# -- recipes -------------------------------------------------------------------------------------

def _recipe_fields(cls: type = Recipe, prefix: str = "") -> tuple[dict[str, tuple[Any, Any]], list[str], set[type]]:
    """(leaf path -> (type hint, default), section paths, dataclasses seen), walking nested dataclasses."""
    leaves: dict[str, tuple[Any, Any]] = {}
    sections: list[str] = []
    seen = {cls}
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        path, hint = prefix + field.name, hints[field.name]
        if dataclasses.is_dataclass(hint):
            sections.append(path)
            sub_leaves, sub_sections, sub_seen = _recipe_fields(hint, path + ".")
            leaves.update(sub_leaves)
            sections += sub_sections
            seen |= sub_seen
            continue
        default = field.default_factory() if field.default is dataclasses.MISSING else field.default
        leaves[path] = (hint, default)
    return leaves, sections, seen


def _type_name(hint: Any) -> str:
    """How the docs spell an annotation: ``float or null``, ``mapping``, ..."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(_type_name(option) for option in typing.get_args(hint))
    if hint is type(None):
        return "null"
    kind = typing.get_origin(hint) or hint
    return {str: "string", int: "int", float: "float", bool: "bool", dict: "mapping"}[kind]


RECIPE_LEAVES, RECIPE_SECTIONS, RECIPE_CLASSES = _recipe_fields()


def test_recipe_walk_reaches_every_config_dataclass():
    assert DataConfig in RECIPE_CLASSES and len(RECIPE_CLASSES) == 5, RECIPE_CLASSES
    assert "optimizer.lr" in RECIPE_LEAVES and "data.root" in RECIPE_LEAVES


def test_recipes_doc_documents_every_field_and_no_other():
    documented = set(_key_rows(RECIPES_DOC.read_text()))
    missing = sorted(set(RECIPE_LEAVES) - documented)
    stale = sorted(documented - set(RECIPE_LEAVES))
    assert not missing, f"recipe fields missing from docs/recipes.md: {missing}"
    assert not stale, f"docs/recipes.md documents keys the recipe does not have: {stale}"


@pytest.mark.parametrize("key", sorted(RECIPE_LEAVES))
def test_recipes_doc_type_and_default_match_the_dataclass(key):
    cells = _key_rows(RECIPES_DOC.read_text()).get(key)
    if cells is None:
        pytest.fail(f"{key} is not documented")
    hint, default = RECIPE_LEAVES[key]
    assert cells[0] == _type_name(hint), f"{key}: type cell {cells[0]!r}, the code says {_type_name(hint)!r}"
    is_literal, value = _literal(cells[1])
    assert is_literal, f"{key}: default cell {cells[1]!r} is not one backticked literal"
    assert value == default and type(value) is type(default), f"{key}: documented default {value!r}, code {default!r}"


def test_recipes_doc_has_a_heading_per_section():
    headings = [line for line in RECIPES_DOC.read_text().splitlines() if line.startswith("#")]
    for section in RECIPE_SECTIONS:
        assert any(f"`{section}`" in line for line in headings), f"no heading for section {section}"


def _flat_keys(data: dict, prefix: str = "") -> set[str]:
    keys = set()
    for name, value in data.items():
        path = prefix + name
        if path not in RECIPE_LEAVES and isinstance(value, dict):
            keys |= _flat_keys(value, path + ".")
        else:
            keys.add(path)
    return keys


def test_recipes_doc_complete_example_loads_and_sets_every_field(tmp_path):
    examples = _examples(RECIPES_DOC.read_text(), "complete-example")
    assert examples, "docs/recipes.md has no complete example"
    for number, block in enumerate(examples):
        assert block.lang == "yaml"
        path = tmp_path / f"example{number}.yaml"
        path.write_text(block.body)
        recipe = load_recipe(path)
        assert isinstance(recipe, Recipe)
        assert _flat_keys(yaml.safe_load(block.body)) == set(RECIPE_LEAVES), "the example should set every field"


def _train_commands(text: str) -> list[tuple[str, list[str]]]:
    """(recipe, overrides) of every ``vitnas train`` command with arguments, placeholders left out."""
    commands = []
    for match in re.finditer(r"vitnas train ([^`\n]+)", text):
        words = shlex.split(match.group(1))
        if not words or words[0].isupper():
            continue
        overrides = [w for w in words[1:] if "=" in w and not w.startswith("-")]
        commands.append((words[0], overrides))
    return commands


def _error_examples(text: str) -> list[tuple[str, str]]:
    """(command, printed line) of each error-example console block."""
    found = []
    for block in _examples(text, "error-example"):
        if block.lang == "console":
            command, output = block.body.strip().splitlines()
            found.append((command.removeprefix("$ "), output))
    return found


@pytest.mark.parametrize("doc", [RECIPES_DOC, SPACES_DOC], ids=lambda p: p.name)
def test_train_commands_in_docs_load(doc, monkeypatch):
    monkeypatch.chdir(REPO)  # recipe paths in the docs are relative to the repository
    text = doc.read_text()
    failing = {command for command, _ in _error_examples(text)}
    commands = _train_commands(text)
    assert commands
    for recipe, overrides in commands:
        line = f"vitnas train {recipe}"
        if any(command.startswith(line) and all(o in command for o in overrides) for command in failing):
            continue
        load_recipe(recipe, overrides)


def test_recipes_doc_error_examples_print_what_the_code_prints(monkeypatch):
    monkeypatch.chdir(REPO)
    examples = _error_examples(RECIPES_DOC.read_text())
    assert len(examples) >= 3
    for command, output in examples:
        (recipe, overrides), = _train_commands(command)
        with pytest.raises(RecipeError) as caught:
            load_recipe(recipe, overrides)
        assert f"vitnas: error: {caught.value}" == output


# -- search spaces -------------------------------------------------------------------------------

SPACE_KEYS = (
    set(_TOP_KEYS)
    | {f"patch.{key}" for key in _PATCH_KEYS}
    | {f"stages[].{key}" for key in _STAGE_KEYS}
    | {f"stages[].token_reduction.{key}" for key in _REDUCTION_KEYS}
)


def test_space_key_constants_are_the_parser_s():
    """The constants the doc test reads are the ones the parser checks against: an unknown key lists them."""
    with pytest.raises(SpaceError, match="known keys: " + ", ".join(_STAGE_KEYS) + r"\)"):
        parse_space({"img_size": 32, "num_classes": 2, "patch": {"mode": "flexi", "sizes": [4]},
                     "stages": [{"depth": 1, "embed_dims": 8}]}, "<test>")


def test_spaces_doc_documents_every_key_and_no_other():
    documented = set(_key_rows(SPACES_DOC.read_text()))
    missing = sorted(SPACE_KEYS - documented)
    stale = sorted(documented - SPACE_KEYS)
    assert not missing, f"space keys missing from docs/search_spaces.md: {missing}"
    assert not stale, f"docs/search_spaces.md documents keys the parser does not accept: {stale}"


def _space_example() -> dict:
    examples = _examples(SPACES_DOC.read_text(), "complete-example")
    assert len(examples) == 1 and examples[0].lang == "yaml"
    return yaml.safe_load(examples[0].body)


def test_spaces_doc_complete_example_loads_and_holds_every_key(tmp_path):
    block = _examples(SPACES_DOC.read_text(), "complete-example")[0]
    path = tmp_path / "example.yaml"
    path.write_text(block.body)
    space = load_space(path)
    assert space.size() > 1
    data = _space_example()
    used = set(data) | {f"patch.{k}" for k in data["patch"]}
    for stage in data["stages"]:
        used |= {f"stages[].{k}" for k in stage}
        used |= {f"stages[].token_reduction.{k}" for k in stage.get("token_reduction") or {}}
    assert used == SPACE_KEYS, f"the complete example lacks {sorted(SPACE_KEYS - used)}"


def _locate(data: dict, key: str) -> tuple[dict, str, str]:
    """(mapping holding `key` in the example, its last name, the concrete path an error names)."""
    *parents, leaf = key.split(".")
    target, concrete = data, []
    for index, part in enumerate(parents):
        if part == "stages[]":
            rest = ".".join(parents[index + 1:] + [leaf]).split(".")[0]
            stage = next(i for i, s in enumerate(target["stages"]) if rest in s)
            target, part = target["stages"][stage], f"stages[{stage}]"
        else:
            target = target[part]
        concrete.append(part)
    return target, leaf, ".".join(concrete + [leaf])


def _outcome(data: dict) -> Any:
    try:
        return parse_space(data, "<doc>")
    except SpaceError as error:
        return str(error)


@pytest.mark.parametrize("key", sorted(SPACE_KEYS))
def test_spaces_doc_required_and_default_columns_match_the_parser(key):
    cells = _key_rows(SPACES_DOC.read_text()).get(key)
    if cells is None:
        pytest.fail(f"{key} is not documented")
    required, default_cell = cells[1], cells[2]
    assert required in ("yes", "no"), f"{key}: Required cell {required!r}"
    without = copy.deepcopy(_space_example())
    target, leaf, concrete = _locate(without, key)
    del target[leaf]
    outcome = _outcome(without)
    if required == "yes":
        assert outcome == f"<doc>: {concrete}: missing required field"
        assert default_cell == "—", f"{key}: a required key has no default"
        return
    assert "missing required field" not in str(outcome), f"{key} is documented as optional: {outcome}"
    is_literal, value = _literal(default_cell)
    if is_literal:  # leaving the key out must equal writing its documented default
        with_default = copy.deepcopy(_space_example())
        target, leaf, _ = _locate(with_default, key)
        target[leaf] = value
        assert _outcome(with_default) == outcome, f"{key}: documented default {value!r} differs from leaving it out"


def test_spaces_doc_describes_every_reducer():
    """The reducer table: one row per reducer of `REDUCERS`, its stages and keep-rate floor as the code has them."""
    text = SPACES_DOC.read_text()
    rows = _key_rows(text, "| Reducer |")
    assert set(rows) == set(REDUCERS), f"reducer table {sorted(rows)}, the code has {sorted(REDUCERS)}"
    for name, info in REDUCERS.items():
        stages, floor = rows[name][1], rows[name][2]
        assert stages == ("any" if info.preserves_grid else "last only"), f"{name}: stages {stages!r}"
        assert _literal(floor) == (True, info.min_keep_rate), f"{name}: keep-rate floor {floor!r}"
    allowed = _key_rows(text)["stages[].token_reduction.reducer"][-1]
    assert all(f"`{name}`" in allowed for name in REDUCERS), f"the reducer key row should list {sorted(REDUCERS)}"


def test_spaces_doc_error_examples_print_what_vitnas_space_prints(tmp_path, monkeypatch):
    blocks = _blocks(SPACES_DOC.read_text())
    pairs = [(b, blocks[i + 1]) for i, b in enumerate(blocks) if b.marker == "error-example"]
    assert len(pairs) >= 3
    monkeypatch.chdir(tmp_path)
    for broken, printed in pairs:
        assert broken.lang == "yaml" and printed.lang == "text"
        Path("my.yaml").write_text(broken.body)
        with pytest.raises(SpaceError) as caught:
            load_space("my.yaml")
        assert f"vitnas: error: {caught.value}" == printed.body.strip()
