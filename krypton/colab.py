"""The first cell of a notebook opened outside a checkout (Colab, Binder, a downloaded file).

`INSTALL_SOURCE` is the one place that says where pip gets krypton from. The repository has no
public address yet, so it is a placeholder: when it gets one, change it here and paste
`FIRST_CELL` (which spells it out, since krypton is not importable before it is installed) over
each notebook's first code cell. tests/test_install.py checks that the notebooks' cells match.

The cell does nothing where krypton imports (a checkout with `pip install -e .`, an installed
environment). Elsewhere it runs the pip command in Colab and prints it everywhere else.
"""

INSTALL_SOURCE = "git+https://example.invalid/krypton.git"  # placeholder: no public URL yet

FIRST_CELL = f"""\
# Outside a checkout (Colab, Binder, a downloaded notebook) this installs krypton; else it does nothing.
import importlib.util, subprocess, sys
PIP = [sys.executable, "-m", "pip", "install", "--quiet", "{INSTALL_SOURCE}"]
if importlib.util.find_spec("krypton") is None:
    if "google.colab" in sys.modules:
        subprocess.run(PIP, check=True)
    else:
        print("krypton is not installed here; run:  pip install {INSTALL_SOURCE}")"""
