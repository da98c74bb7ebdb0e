"""krypton works installed, not only from a checkout: from a wheel and from `pip install .`.

Each test copies the repository's files to a temporary directory, installs them into a fresh
virtual environment (not editable), and from another directory imports krypton and multiplies
on every rung, comparing with NumPy in float64. The environments see this Python's packages
(``--system-site-packages``, pip and setuptools too) and pip builds without an isolated build environment or an index,
so the tests need no network. The kernel cache is the usual one: a warm cache makes them fast,
and the installed package must still find its own C sources (they are part of the cache key).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent

# Run inside the new environment, from a directory that holds no krypton.
CHECK = """
import sys
from pathlib import Path

import numpy as np

import krypton
from krypton import seam

prefix = Path(sys.prefix).resolve()
for what, path in (("krypton", Path(krypton.__file__)), ("its C sources", seam.CSRC)):
    assert path.resolve().is_relative_to(prefix), f"{what} came from {path}, not from {prefix}"
rng = np.random.default_rng(0)
a = rng.uniform(-1, 1, (37, 29)).astype(np.float32)
b = rng.uniform(-1, 1, (29, 53)).astype(np.float32)
for name in krypton.KERNELS:
    error = float(np.abs(krypton.matmul(a, b, kernel=name) - a.astype(np.float64) @ b).max())
    assert error < 1e-4, f"{name}: max |error| {error}"
    print(name, "ok")
"""


def _pip(python: Path, *args: str, cwd: Path | None = None) -> None:
    command = [str(python), "-m", "pip", "install", "--no-build-isolation", "--no-deps",
               "--no-index", "--quiet", *args]
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, env=_clean_env())
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout}{result.stderr}"


def _clean_env() -> dict[str, str]:
    # A PYTHONPATH pointing at the checkout would hide whether the installed copy works.
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PIP_REQUIRE_VIRTUALENV")}


def _copy_of_the_repository(destination: Path) -> Path:
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                            cwd=REPO, capture_output=True, text=True)
    if listed.returncode != 0:
        pytest.skip(f"git could not list the repository's files: {listed.stderr.strip()}")
    for name in listed.stdout.splitlines():
        source = REPO / name
        if source.is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)
    return destination


def _new_venv(path: Path) -> Path:
    # Without a pip of its own, the environment uses this Python's pip and setuptools (seen
    # through --system-site-packages): venv's bundled setuptools may be too old to build.
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip",
                    str(path)], check=True, capture_output=True)
    return path / "bin" / "python"


def _multiplies_on_every_rung(python: Path, cwd: Path) -> None:
    result = subprocess.run([str(python), "-c", CHECK], cwd=cwd, capture_output=True,
                            text=True, env=_clean_env(), timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    import krypton

    assert result.stdout.split() == [word for name in krypton.KERNELS for word in (name, "ok")]


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    return _copy_of_the_repository(tmp_path_factory.mktemp("source"))


def test_pip_install_dot_gives_a_package_that_works_from_any_directory(source, tmp_path):
    python = _new_venv(tmp_path / "venv")
    _pip(python, str(source))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    _multiplies_on_every_rung(python, elsewhere)


def test_a_built_wheel_carries_the_c_sources_and_works_installed(source, tmp_path):
    wheels = tmp_path / "wheels"
    command = [sys.executable, "-m", "pip", "wheel", "--no-build-isolation", "--no-deps",
               "--no-index", "--quiet", "-w", str(wheels), str(source)]
    built = subprocess.run(command, capture_output=True, text=True, env=_clean_env())
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = wheels.glob("krypton-*.whl")
    import zipfile

    names = zipfile.ZipFile(wheel).namelist()
    for c_file in (REPO / "csrc").iterdir():
        assert f"krypton/csrc/{c_file.name}" in names, f"{wheel.name} lacks {c_file.name}"
    python = _new_venv(tmp_path / "venv")
    _pip(python, str(wheel))
    _multiplies_on_every_rung(python, tmp_path)


def test_pip_install_from_a_git_url_works_as_colab_would_do_it(source, tmp_path):
    # The first cell of a notebook in Colab or Binder: %pip install git+<url>.
    repository = tmp_path / "repository"
    shutil.copytree(source, repository)
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.invalid"]
    for command in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "snapshot"]):
        subprocess.run([*git, *command], cwd=repository, check=True, capture_output=True)
    python = _new_venv(tmp_path / "venv")
    _pip(python, f"git+file://{repository}")
    _multiplies_on_every_rung(python, tmp_path)


def _notebooks_with_the_first_cell() -> list[Path]:
    import json

    from krypton import colab

    found = []
    for path in sorted((REPO / "notebooks").glob("*.ipynb")):
        cells = json.loads(path.read_text())["cells"]
        code = [cell for cell in cells if cell["cell_type"] == "code"]
        if code and "".join(code[0]["source"]) == colab.FIRST_CELL:
            found.append(path)
    return found


def test_every_notebook_begins_with_the_install_cell_from_krypton_colab():
    found = {path.name for path in _notebooks_with_the_first_cell()}
    every = {path.name for path in (REPO / "notebooks").glob("*.ipynb")}
    assert every and found == every, (
        f"first code cell is not krypton.colab.FIRST_CELL in {sorted(every - found)}")


def test_the_first_cell_is_quiet_when_installed_and_prints_pip_when_not(source, tmp_path):
    from krypton import colab

    cell = tmp_path / "first_cell.py"
    cell.write_text(colab.FIRST_CELL)
    python = _new_venv(tmp_path / "venv")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    def run_cell() -> str:
        result = subprocess.run([str(python), str(cell)], cwd=elsewhere, capture_output=True,
                                text=True, env=_clean_env(), timeout=120)
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    # Not installed (a bare venv: no system site-packages): the cell prints the one command.
    bare = _bare_venv(tmp_path / "bare")
    printed = subprocess.run([str(bare), str(cell)], cwd=elsewhere, capture_output=True,
                             text=True, env=_clean_env(), timeout=120)
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout == f"krypton is not installed here; run:  pip install {colab.INSTALL_SOURCE}\n"
    # Installed: the cell is silent, and krypton imports and multiplies from another directory.
    _pip(python, str(source))
    assert run_cell() == ""
    _multiplies_on_every_rung(python, elsewhere)


def _bare_venv(path: Path) -> Path:
    # No system site-packages: krypton is certainly not importable here.
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True,
                   capture_output=True)
    return path / "bin" / "python"


def test_the_first_cell_is_silent_in_a_checkout():
    from krypton import colab

    env = {**_clean_env(), "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-c", colab.FIRST_CELL], cwd=REPO / "notebooks",
                            capture_output=True, text=True, env=env, timeout=120)
    assert (result.returncode, result.stdout) == (0, ""), result.stdout + result.stderr
