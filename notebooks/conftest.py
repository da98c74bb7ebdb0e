"""nbval runs of the notebooks use quick mode (KRYPTON_QUICK=1) unless the caller set it.

tests/conftest.py does the same for a whole `pytest` run; this file covers `pytest notebooks/`.
The notebook kernels nbval starts inherit this process's environment.
"""

import os

os.environ.setdefault("KRYPTON_QUICK", "1")
os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
