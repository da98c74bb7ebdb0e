"""Build hook: an installed krypton carries its C sources, so it can compile its kernels anywhere.

The repository keeps one copy of the kernels, in csrc/ (the notebooks show and edit them
there). Building a wheel or running `pip install .` copies that directory into the package as
krypton/csrc, where krypton.seam looks first. An editable install needs no copy: it reads
csrc/ from the checkout. Everything else about the package is in pyproject.toml.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

CSRC = Path(__file__).resolve().parent / "csrc"


class BuildPyWithCSources(build_py):
    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return
        shutil.copytree(CSRC, Path(self.build_lib) / "krypton" / "csrc", dirs_exist_ok=True)


setup(cmdclass={"build_py": BuildPyWithCSources})
