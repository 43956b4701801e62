"""`vitnas.train.rundir`: the one rule every verb follows to start, continue or restart a run directory."""

from __future__ import annotations

import pytest

from vitnas.errors import SearchError
from vitnas.train.rundir import check_same, continues, first_difference, read_settings, start_over


def test_the_first_difference_is_named_by_its_dotted_path_in_the_given_order():
    given = {"epochs": 5, "optimizer": {"name": "adamw", "lr": 0.1}, "seed": 1}
    assert first_difference(given, given) is None
    assert first_difference(given, {**given, "optimizer": {"name": "adamw", "lr": 0.2}}) == "optimizer.lr"
    assert first_difference(given, {**given, "epochs": 6, "seed": 2}) == "epochs"
    assert first_difference(given, {**given, "extra": 1}) == "extra"  # a field only the stored run has counts too
    assert first_difference({"budget": [1.0]}, {"budget": [1.0, 2.0]}) == "budget"


def test_a_difference_is_one_line_naming_the_field_and_both_values(tmp_path):
    with pytest.raises(SearchError) as error:
        check_same({"config": {"seed": 1}}, {"config": {"seed": 0}}, tmp_path, SearchError)
    assert str(error.value) == (f"{tmp_path}: was started with config.seed 0, not 1; give the same settings to "
                                "continue it, --fresh to start over, or another --out")


def test_continues_when_a_marker_is_there_and_resume_insists_or_refuses(tmp_path):
    out = tmp_path / "run"
    assert continues(out, ("search.json",), None, SearchError, "a search") is False  # nothing yet: start
    assert continues(out, ("search.json",), False, SearchError, "a search") is False
    with pytest.raises(SearchError, match=rf"^--resume: nothing to resume in {out} \(no search\.json\)"):
        continues(out, ("search.json",), True, SearchError, "a search")
    out.mkdir()
    (out / "search.json").write_text("{}")
    assert continues(out, ("search.json",), None, SearchError, "a search") is True
    assert continues(out, ("search.json",), True, SearchError, "a search") is True
    with pytest.raises(SearchError, match=rf"^{out} already holds a search: leave resume unset to continue it"):
        continues(out, ("search.json",), False, SearchError, "a search")
    (tmp_path / "file").write_text("")
    with pytest.raises(SearchError, match=r"--out .*file: exists and is not a directory"):
        continues(tmp_path / "file", ("search.json",), None, SearchError, "a search")


def test_start_over_deletes_the_verbs_own_files_only(tmp_path):
    for name in ("latest", "metrics.jsonl", "ckpt-0000001/meta.json", ".ckpt-0000002-x/meta.json", "notes.txt",
                 "export/config.json"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    removed = start_over(tmp_path, ("latest", "ckpt-*", ".ckpt-*", "metrics.jsonl"))
    assert sorted(path.name for path in removed) == [".ckpt-0000002-x", "ckpt-0000001", "latest", "metrics.jsonl"]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["export", "notes.txt"]
    assert start_over(tmp_path / "none", ("latest",)) == []  # no folder: nothing to do


def test_stored_settings_that_cannot_be_read_are_one_line(tmp_path):
    path = tmp_path / "search.json"
    path.write_text("[1, 2]")
    with pytest.raises(SearchError, match=r"search\.json: not a search's settings \(a JSON object expected\)$"):
        read_settings(path, SearchError, "a search")
    path.write_text("{")
    with pytest.raises(SearchError, match=r"search\.json: not a search's settings \(JSONDecodeError: "):
        read_settings(path, SearchError, "a search")


def test_holds_checkpoint_tells_a_run_or_checkpoint_folder_from_anything_else(tmp_path):
    from vitnas.train.checkpoint import holds_checkpoint

    assert not holds_checkpoint(tmp_path) and not holds_checkpoint(tmp_path / "none")
    (tmp_path / "ckpt-0000001").mkdir()
    (tmp_path / "ckpt-0000001" / "meta.json").write_text("{}")
    assert holds_checkpoint(tmp_path / "ckpt-0000001") and not holds_checkpoint(tmp_path)
    (tmp_path / "latest").write_text("ckpt-0000001\n")
    assert holds_checkpoint(tmp_path)
