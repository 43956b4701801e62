"""`pip install .` (not only ``-e``) gives a working vitnas: every subpackage, the spaces and the recipes,
and the packages the main job needs, so that a plain install runs `vitnas run` to the end."""

from __future__ import annotations

import ast
import email
import importlib.metadata
import json
import os
import subprocess
import sys
import zipfile
from collections import Counter
from pathlib import Path
from typing import Iterator

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from setuptools.config.setupcfg import read_configuration

REPOSITORY = Path(__file__).resolve().parent.parent

# `vitnas run` at its defaults (Ray backend; safetensors, TorchScript and ONNX forms), shrunk to about a minute:
# one latency budget given, so two export folders (and the elastic bundle) instead of three
TINY_RUN = ("--workers", "1", "--generations", "2", "--population", "6", "--profile-samples", "6",
            "--latency-batch", "4", "--latency-ms", "1000", "--no-progress", "epochs=1", "sampler.name=single")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(folder), str(REPOSITORY)], check=True, capture_output=True, cwd=folder)
    (built,) = folder.glob("vitnas-*.whl")
    return built


@pytest.mark.slow
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


@pytest.mark.slow
def test_installed_wheel_finds_spaces_and_recipes_outside_the_checkout(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True)
    script = (
        "import vitnas, vitnas.train.recipe as r, vitnas.space.space as s\n"
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
    assert lines[0] == ("['deit_small_supervit', 'fmnist28_fmnist', 'resnas_tiny', 'tiny32_digits', "
                        "'tiny32_reducers_digits'] ['deit', 'fmnist28', 'resnas', 'tiny32', 'tiny32_reducers']")
    assert lines[1] == "tiny32 tiny32"
    assert lines[2] == "True"  # read from the installed package, not from this checkout


# -- every import declared ---------------------------------------------------------------------------------

def test_every_third_party_import_in_vitnas_is_declared_and_every_requirement_is_used():
    """Unguarded imports need install_requires; an import behind ``except ImportError`` or a `find_spec`
    probe (optional, or failing in one line) may come from an extra instead."""
    options = read_configuration(str(REPOSITORY / "setup.cfg"))["options"]
    required = {canonicalize_name(Requirement(text).name) for text in options["install_requires"]}
    optional = {canonicalize_name(Requirement(text).name) for texts in options["extras_require"].values()
                for text in texts}
    providers = importlib.metadata.packages_distributions()
    used = set()
    for path in sorted((REPOSITORY / "vitnas").rglob("*.py")):
        for module, guarded in _third_party_imports(ast.parse(path.read_text())):
            distributions = {canonicalize_name(name) for name in providers.get(module, ())}
            assert distributions, f"{path.relative_to(REPOSITORY)}: no installed distribution provides {module}"
            allowed = required | optional if guarded else required
            assert distributions & allowed, (f"{path.relative_to(REPOSITORY)}: imports {module} "
                                             f"({', '.join(sorted(distributions))}), which setup.cfg does not "
                                             f"{'declare' if guarded else 'require'}")
            used |= distributions
    assert required <= used, f"required but never imported: {sorted(required - used)}"


def _third_party_imports(tree: ast.Module) -> Iterator[tuple[str, bool]]:
    """(top-level module, guarded) for each absolute import outside the standard library and vitnas, and
    each ``find_spec("name")`` probe (always guarded: it asks before importing)."""
    guarded = {id(inner) for node in ast.walk(tree) if isinstance(node, ast.Try)
               and any(_catches_import_error(handler) for handler in node.handlers)
               for statement in node.body for inner in ast.walk(statement)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found = [(alias.name, id(node) in guarded) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            found = [(node.module, id(node) in guarded)]
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) == "find_spec"
              and node.args and isinstance(node.args[0], ast.Constant)):
            found = [(node.args[0].value, True)]
        else:
            continue
        for name, is_guarded in found:
            top = name.split(".")[0]
            if top not in sys.stdlib_module_names and top != "vitnas":
                yield top, is_guarded


def _catches_import_error(handler: ast.ExceptHandler) -> bool:
    caught = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
    return any(isinstance(name, ast.Name) and name.id in ("ImportError", "ModuleNotFoundError") for name in caught)


# -- a plain install runs the main job --------------------------------------------------------------------


def _requirement_closure(requirements: list[Requirement]) -> list[importlib.metadata.Distribution]:
    """The installed distributions `requirements` pull in, with their own requirements, as pip would resolve them.

    Markers are evaluated for this interpreter and the extras asked for (``ray[tune]``
    brings Tune's packages). A requirement this environment lacks or holds at a version
    outside its specifier fails the test: the closure must be exactly what pip installs.
    """
    found, seen, pending = {}, set(), list(requirements)
    while pending:
        requirement = pending.pop()
        key = (canonicalize_name(requirement.name), frozenset(requirement.extras))
        if key in seen:
            continue
        seen.add(key)
        try:
            distribution = importlib.metadata.distribution(requirement.name)
        except importlib.metadata.PackageNotFoundError:
            pytest.fail(f"{requirement} is required but not installed here")
        assert requirement.specifier.contains(distribution.version, prereleases=True), (requirement,
                                                                                         distribution.version)
        found[key[0]] = distribution
        pending += [dependency for dependency in map(Requirement, distribution.requires or ())
                    if _applies(dependency, requirement.extras)]
    return list(found.values())


def _applies(requirement: Requirement, extras: set[str]) -> bool:
    """Whether `requirement` holds on this interpreter when its dependant was asked for `extras`."""
    return requirement.marker is None or any(requirement.marker.evaluate({"extra": extra}) for extra in ("", *extras))


def _expose(distributions: list[importlib.metadata.Distribution], overlay: Path) -> None:
    """Symlinks each distribution's top-level modules and its .dist-info into `overlay`, and nothing else.

    A top-level folder that several distributions share (``nvidia/``, a namespace
    package) becomes a real folder holding only the shared distributions' own entries.
    """
    owners = Counter(top for distribution in distributions for top in _top_level(distribution))
    for distribution in distributions:
        root, tops = Path(distribution.locate_file("")), _top_level(distribution)
        entries = {file.parts[:2] if owners[file.parts[0]] > 1 else file.parts[:1]
                   for file in distribution.files if file.parts[0] in tops}
        for parts in entries:
            link = overlay.joinpath(*parts)
            link.parent.mkdir(parents=True, exist_ok=True)
            if not link.exists():
                link.symlink_to(root.joinpath(*parts))


def _top_level(distribution: importlib.metadata.Distribution) -> set[str]:
    assert distribution.files is not None, f"{distribution.name} lists no files (no RECORD)"
    return {file.parts[0] for file in distribution.files} - {"..", "__pycache__"}


def _without_python_variables() -> dict[str, str]:
    """This environment without PYTHONPATH and friends, which would show the venv this checkout's vitnas."""
    return {key: value for key, value in os.environ.items() if not key.startswith("PYTHON")}


@pytest.fixture(scope="module")
def plain_install(wheel, tmp_path_factory) -> Path:
    """A fresh venv that sees only the wheel's install_requires closure: ``pip install vitnas.whl`` without extras.

    Reinstalling torch per test would cost gigabytes, so the venv reads the closure from
    this environment through a ``.pth`` overlay of symlinks. Returns the venv's bin folder.
    """
    root = tmp_path_factory.mktemp("plain")
    venv, overlay = root / "venv", root / "overlay"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    metadata = zipfile.ZipFile(wheel).read(next(n for n in zipfile.ZipFile(wheel).namelist()
                                                if n.endswith(".dist-info/METADATA")))
    required = [requirement for requirement in map(Requirement, email.message_from_bytes(metadata)
                                                   .get_all("Requires-Dist", [])) if _applies(requirement, set())]
    _expose(_requirement_closure(required), overlay)
    python = venv / "bin" / "python"
    site_packages = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                                   check=True, capture_output=True, text=True).stdout.strip()
    (Path(site_packages) / "closure-overlay.pth").write_text(f"import site; site.addsitedir({str(overlay)!r})\n")
    pip = [sys.executable, "-m", "pip", "--python", str(python)]
    installed = subprocess.run([*pip, "install", "--no-deps", str(wheel)], capture_output=True, text=True,
                               env=_without_python_variables())
    assert "Successfully installed vitnas" in installed.stdout, installed.stdout + installed.stderr
    check = subprocess.run([*pip, "check"], capture_output=True, text=True, env=_without_python_variables())
    assert check.returncode == 0, check.stdout + check.stderr  # every installed package's requirements are met
    return venv / "bin"


@pytest.mark.slow
def test_plain_install_runs_the_main_job_to_the_end_in_an_empty_folder(plain_install, tmp_path):
    environment = _without_python_variables()
    environment.update(PATH=f"{plain_install}{os.pathsep}{os.environ['PATH']}", OMP_NUM_THREADS="1")
    probe = subprocess.run([plain_install / "python", "-c", "import importlib.util as u, vitnas; "
                            "print(vitnas.__file__, u.find_spec('pytest'))"],
                           capture_output=True, text=True, env=environment, cwd=tmp_path)
    assert probe.stdout.split() == [probe.stdout.split()[0], "None"], probe.stderr  # the test extra stays out
    assert probe.stdout.startswith(str(plain_install.parent)), probe.stdout  # the wheel, not this checkout
    result = subprocess.run(["vitnas", "run", *TINY_RUN], capture_output=True, text=True, env=environment,
                            cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "elastic bundle: vitnas-run/export/elastic" in result.stdout, result.stdout
    assert [path.name for path in tmp_path.iterdir()] == ["vitnas-run"]
    folders = [line.removeprefix("export: ") for line in result.stdout.splitlines() if line.startswith("export: ")]
    assert len(folders) == 2
    for folder in folders:
        config = json.loads((tmp_path / folder / "config.json").read_text())
        assert "onnxruntime" in config["formats"]["onnx"]["check"]["runtime"], config["formats"]["onnx"]
