"""nbval runs of the notebooks use quick mode (KRYPTON_QUICK=1) unless the caller set it.

tests/conftest.py does the same for a whole `pytest` run; this file covers `pytest notebooks/`.
The notebook kernels nbval starts inherit this process's environment. Notebooks 09-11 are
skipped, with the command that provides data, where there is no dataset.
"""

import os

import pytest

os.environ.setdefault("KRYPTON_QUICK", "1")
os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")

# Notebooks 09-11 train on real data. Without it (offline, and no Fashion-MNIST installed) its
# cells are skipped with the reason, so that a machine that merely lacks data passes.

NEEDS_DATA = ("09_mnist.ipynb", "10_training_step.ipynb", "11_convolution.ipynb")
DATA_MISSING = ("notebooks 09-11 need MNIST or Fashion-MNIST, and neither is on this machine: "
                "`sudo apt-get install dataset-fashion-mnist` provides Fashion-MNIST "
                "(or run `python build.py` online, which downloads MNIST)")


def pytest_collection_modifyitems(config, items):
    needing = [item for item in items if item.path.name in NEEDS_DATA]
    if not needing:
        return
    from krypton import data

    if data.find_local("mnist") or data.find_local("fashion-mnist"):
        return
    for item in needing:
        item.add_marker(pytest.mark.skip(reason=DATA_MISSING))
