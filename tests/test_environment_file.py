"""environment.yml (conda, mamba, Binder) asks for what pyproject.toml (pip) asks for.

The two files list the same packages twice, so they can drift: a package added to one only,
a pin raised in one only. These tests read both and fail on any difference: every package of
pyproject.toml's dependencies and its dev extra is in environment.yml with the same version
specifier, environment.yml asks for nothing else (beyond the few conda needs itself), and its
Python satisfies requires-python. They do not create the environment: conda and mamba are not
tried here (this machine has no conda-forge access); CI or a learner's machine does that.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml", reason="PyYAML (a JupyterLab dependency) is not installed")
from packaging.requirements import Requirement  # noqa: E402
from packaging.specifiers import SpecifierSet  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
# Packages conda needs that pip does not list: the interpreter, pip itself, a C compiler.
CONDA_ONLY = {"python", "pip", "c-compiler"}
# Where a package's conda-forge name differs from its PyPI name (none yet): {"pypi": "conda"}.
CONDA_NAMES: dict[str, str] = {}


def _pyproject() -> dict:
    try:
        import tomllib
    except ModuleNotFoundError:                 # Python < 3.11
        tomllib = pytest.importorskip("tomli")
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def _pip_wants() -> dict[str, SpecifierSet]:
    project = _pyproject()
    wanted = {}
    for line in [*project["dependencies"], *project["optional-dependencies"]["dev"]]:
        requirement = Requirement(line)
        wanted[CONDA_NAMES.get(requirement.name, requirement.name).lower()] = \
            requirement.specifier
    return wanted


def _conda_wants() -> tuple[dict[str, SpecifierSet], list[str]]:
    """environment.yml's packages (conda ones and its pip: list) by name, and its pip lines."""
    environment = yaml.safe_load((REPO / "environment.yml").read_text())
    wanted, pip_lines = {}, []
    for entry in environment["dependencies"]:
        if isinstance(entry, dict):
            pip_lines = list(entry["pip"])
            continue
        name, spec = re.fullmatch(r"([A-Za-z0-9_.-]+)\s*(.*)", entry.strip()).groups()
        if spec.startswith("=") and not spec.startswith("=="):    # conda's python=3.11
            spec = "==" + spec[1:] + ".*"
        wanted[name.lower()] = SpecifierSet(spec)
    for line in pip_lines:
        if not line.startswith("-"):                           # "-e ." is the package itself
            requirement = Requirement(line)
            wanted[requirement.name.lower()] = requirement.specifier
    return wanted, pip_lines


def test_environment_yml_has_every_package_of_pyproject_with_the_same_pin():
    conda, _ = _conda_wants()
    for name, spec in _pip_wants().items():
        assert name in conda, f"{name} is in pyproject.toml but not in environment.yml"
        assert conda[name] == spec, \
            f"{name}: pyproject.toml pins {spec or 'nothing'}, environment.yml {conda[name]}"


def test_environment_yml_asks_for_nothing_pyproject_does_not():
    conda, _ = _conda_wants()
    extra = set(conda) - set(_pip_wants()) - CONDA_ONLY
    assert not extra, f"environment.yml has {sorted(extra)}, which pyproject.toml lacks"


def test_environment_yml_python_satisfies_requires_python_and_installs_the_package():
    conda, pip_lines = _conda_wants()
    requires = SpecifierSet(_pyproject()["requires-python"])
    version = re.search(r"\d+(\.\d+)+", str(conda["python"])).group(0)
    assert version in requires, f"environment.yml's python {version} is outside {requires}"
    assert any(re.fullmatch(r"-e\s+\.", line) for line in pip_lines), \
        "environment.yml does not install this checkout (pip: - -e .)"
