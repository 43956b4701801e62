"""`pip install .` (not only ``-e``) gives a working vitnas: every subpackage, the spaces and the recipes."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(folder), str(REPOSITORY)], check=True, capture_output=True, cwd=folder)
    (built,) = folder.glob("vitnas-*.whl")
    return built


def test_wheel_holds_every_subpackage_space_and_recipe(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    packages = {str(p.parent.relative_to(REPOSITORY)) for p in (REPOSITORY / "vitnas").rglob("__init__.py")}
    assert {"vitnas", "vitnas/export", "vitnas/latency", "vitnas/search"} <= packages
    for package in packages:
        assert f"{package}/__init__.py" in names, f"{package} is missing from the wheel"
    sources = {str(p.relative_to(REPOSITORY)) for p in (REPOSITORY / "vitnas").rglob("*.py")}
    assert sources <= names
    for folder, package in (("search_spaces", "vitnas/search_spaces"), ("supernets", "vitnas/recipes")):
        shipped = sorted(p.name for p in (REPOSITORY / folder).glob("*.yaml"))
        assert shipped and all(f"{package}/{name}" in names for name in shipped), folder
    assert "vitnas/py.typed" in names
    entry_points = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "vitnas = vitnas.cli:main" in entry_points


def test_installed_wheel_finds_spaces_and_recipes_outside_the_checkout(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True)
    script = (
        "import vitnas, vitnas.recipe as r, vitnas.space as s\n"
        "assert vitnas.__file__.startswith(%r), vitnas.__file__\n"
        "print(sorted(r.shipped_recipes()), sorted(s.shipped_spaces()))\n"
        "print(r.load_recipe('tiny32_digits').space, s.load_space('tiny32').name)\n"
        "print(all(str(p).startswith(%r) for p in [*r.shipped_recipes().values(), *s.shipped_spaces().values()]))\n"
    ) % (str(target), str(target))
    environment = {**os.environ, "PYTHONPATH": str(target)}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path,
                            env=environment)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == ("['deit_small_supervit', 'resnas_tiny', 'tiny32_digits', 'tiny32_reducers_digits'] "
                        "['deit', 'resnas', 'tiny32', 'tiny32_reducers']")
    assert lines[1] == "tiny32 tiny32"
    assert lines[2] == "True"  # read from the installed package, not from this checkout
