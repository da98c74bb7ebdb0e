"""Plumbing the notebooks share: show C source, check a kernel, time it, read its assembly.

The notebooks keep what they teach in view and import only this kind of plumbing. Nothing
here is needed outside a notebook, but all of it works in a plain Python session too.
"""

from __future__ import annotations

import difflib
import re
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from krypton import seam, timing
from krypton.kernels import Kernel, get_kernel, kernel_source, matmul
from krypton.timing import quick_mode


def pick(full: Any, quick: Any) -> Any:
    """``full`` normally, ``quick`` in quick mode: ``sizes = pick([256, 512, 1024], [64, 128])``."""
    return quick if quick_mode() else full


def c_source(kernel_or_path: str | Path, function: str | None = None) -> str:
    """The C source of a rung (``"packed"``) or a file of csrc/, or just one function of it."""
    name = str(kernel_or_path)
    if Path(name).suffix in (".c", ".h"):
        text = (seam.CSRC / Path(name).name).read_text()
    else:
        text = kernel_source(name)
    if function is None:
        return text
    match = re.search(rf"^[^\n;{{}}]*\b{re.escape(function)}\s*\([^;{{]*?\)\s*\{{", text,
                      flags=re.MULTILINE)
    if not match:
        raise ValueError(f"no function {function!r} defined in {name}")
    start = text.rfind("\n\n", 0, match.start()) + 2  # include the comment block above it
    depth, end = 0, match.end() - 1
    for end in range(match.end() - 1, len(text)):
        depth += {"{": 1, "}": -1}.get(text[end], 0)
        if depth == 0:
            break
    return text[start:end + 1]


def show_c(kernel_or_path: str | Path, function: str | None = None):
    """Display C source with syntax highlighting (a whole rung, a csrc/ file, or one function)."""
    from IPython.display import Code

    return Code(c_source(kernel_or_path, function), language="c")


def show_diff(old: str, new: str, old_name: str = "old", new_name: str = "new"):
    """Display what changed from C source ``old`` to ``new``, as a highlighted unified diff."""
    from IPython.display import Code

    lines = difflib.unified_diff(old.splitlines(), new.splitlines(), old_name, new_name,
                                 lineterm="", n=2)
    return Code("\n".join(lines), language="diff")


def check_against_numpy(kernel: str | Kernel | Callable, shapes: Iterable[tuple[int, int, int]]
                        = timing.CHECK_SHAPES, seed: int = 0, **knobs: Any) -> list[dict[str, Any]]:
    """Run a kernel on (M, N, K) shapes and compare with NumPy in float64.

    Returns one row per shape: the shape, the largest absolute error, the tolerance (which
    grows like sqrt(K), as float32 rounding errors do) and whether the kernel passed. The
    check itself is ``krypton.timing.check_against_numpy``, the one build.py and the tests use.
    """
    return timing.check_against_numpy(lambda a, b: _call(kernel, a, b, **knobs), shapes, seed)


def print_check(rows: Sequence[dict[str, Any]]) -> bool:
    """Print ``check_against_numpy``'s rows as a table; return True when every shape passed."""
    print(f"{'M x N x K':>16} {'max |error|':>12} {'tolerance':>10}  result")
    for row in rows:
        m, n, k = row["shape"]
        print(f"{f'{m} x {n} x {k}':>16} {row['max_error']:12.2e} {row['tolerance']:10.1e}  "
              f"{'ok' if row['ok'] else 'WRONG'}")
    return all(row["ok"] for row in rows)


def _call(kernel: str | Kernel | Callable, a: np.ndarray, b: np.ndarray, **knobs: Any):
    if isinstance(kernel, str):
        return matmul(a, b, kernel=kernel, **knobs)
    return kernel(a, b, **knobs)


def time_gflops(kernel: str | Kernel | Callable, n: int | tuple[int, int, int],
                repeats: int = 5, threads: int | None = None, seed: int = 0,
                **knobs: Any) -> float:
    """GFLOPS of one kernel on one shape: median of ``repeats`` timed calls after a warm-up.

    ``kernel`` is a rung name, "numpy", a ``Kernel`` or any function ``f(a, b)``; ``n`` is a
    square size or (M, N, K).
    """
    m, n_, k = (n, n, n) if isinstance(n, int) else n
    a, b = timing.random_operands(m, n_, k, seed)
    if kernel == "numpy":
        with timing.blas_threads(threads or 1):
            seconds = timing.median_seconds(lambda: a @ b, repeats)
    else:
        extra = {"threads": threads} if threads is not None else {}
        seconds = timing.median_seconds(lambda: _call(kernel, a, b, **extra, **knobs), repeats)
    return timing.gflops(m, n_, k, seconds)


def disassemble(kernel: str | Kernel, symbol: str | None = None, **code_knobs: Any) -> str:
    """The machine code of a compiled kernel (objdump), or of one function in it.

    Static helper functions are usually inlined into the exported ``kr_sgemm_<rung>``; pass
    ``symbol`` to pick another function that survived as its own symbol.
    """
    compiled = kernel if isinstance(kernel, Kernel) else get_kernel(kernel, **code_knobs)
    objdump = shutil.which("objdump")
    if objdump is None:
        raise RuntimeError("objdump was not found: install binutils (apt-get install binutils)")
    return _function_block(objdump, compiled.module.path, symbol or compiled.function_name)


def _function_block(objdump: str, binary: Path, symbol: str) -> str:
    """objdump's disassembly of one function of ``binary`` (Intel syntax on x86)."""
    result = subprocess.run([objdump, "-d", "--no-show-raw-insn", "-M", "intel", str(binary)],
                            capture_output=True, text=True)
    if result.returncode != 0:  # -M intel is x86-only
        result = subprocess.run([objdump, "-d", "--no-show-raw-insn", str(binary)],
                                capture_output=True, text=True, check=True)
    blocks = re.split(r"\n(?=[0-9a-f]+ <)", result.stdout)
    names = []
    for block in blocks:
        found = re.match(r"[0-9a-f]+ <([^>]+)>:", block)
        if not found:
            continue
        names.append(found.group(1))
        # gcc may rename a specialised copy: kr_microkernel.constprop.0, .isra.0, ...
        if found.group(1) == symbol or found.group(1).startswith(symbol + "."):
            return block
    ours = [n for n in names if n.startswith("kr_")]
    raise ValueError(f"no symbol {symbol!r} in {binary.name}; it has {ours}")


# The other architecture a notebook can show: its GNU triple, the flags that pick its vector ISA,
# and the Debian package of its cross compiler. x86-64 is shown as AVX2 + FMA, the ISA most x86
# machines have; aarch64 as armv8-a, which includes NEON.
CROSS_TARGETS = {
    "aarch64": ("aarch64-linux-gnu", ("-march=armv8-a",), "gcc-aarch64-linux-gnu"),
    "x86_64": ("x86_64-linux-gnu", ("-mavx2", "-mfma"), "gcc-x86-64-linux-gnu"),
}


class CrossCompilerNotFoundError(RuntimeError):
    """No compiler (or no disassembler) for the asked-for architecture is installed."""


def cross_disassemble(kernel: str, target: str) -> tuple[str, str]:
    """The machine code of rung ``kernel`` compiled for another architecture ``target``
    (``"aarch64"`` or ``"x86_64"``), and the compile command used.

    The rung's file (csrc/<kernel>.c) is compiled to an object file with the seam's
    optimisation flags by ``<triple>-gcc``, or ``clang --target=<triple>`` (Debian's clang can
    cross-compile when the target's headers are installed), and disassembled by
    ``<triple>-objdump`` or ``llvm-objdump``. Raises CrossCompilerNotFoundError, saying what to
    install, when none of them works here.
    """
    if target not in CROSS_TARGETS:
        raise ValueError(f"target must be one of {sorted(CROSS_TARGETS)}, got {target!r}")
    triple, isa_flags, package = CROSS_TARGETS[target]
    source = seam.CSRC / f"{kernel}.c"
    if not source.is_file():
        raise ValueError(f"no rung {kernel!r}: {source} does not exist")
    objdumps = [shutil.which(name) for name in
                (f"{triple}-objdump", "llvm-objdump", "llvm-objdump-16", "llvm-objdump-14")]
    objdump = next((path for path in objdumps if path), None)
    if objdump is None:
        raise CrossCompilerNotFoundError(
            f"no disassembler for {target}: install binutils-{triple.replace('_', '-')} or llvm")
    compilers = [[f"{triple}-gcc"], *([clang, f"--target={triple}"]
                                      for clang in ("clang", "clang-16", "clang-15", "clang-14"))]
    tried = []
    with tempfile.TemporaryDirectory() as tmp:
        obj = Path(tmp, f"{kernel}.o")
        for compiler in compilers:
            if shutil.which(compiler[0]) is None:
                continue
            command = [*compiler, "-O3", "-std=gnu11", "-fPIC", *isa_flags,
                       f"-I{seam.CSRC}", "-c", str(source), "-o", str(obj)]
            result = subprocess.run(command, capture_output=True, text=True)
            if result.returncode == 0:
                shown = shlex.join([*compiler, "-O3", *isa_flags, "-c", f"csrc/{kernel}.c"])
                return _function_block(objdump, obj, f"kr_sgemm_{kernel}"), shown
            tried.append(f"{shlex.join(compiler)}: {result.stderr.strip().splitlines()[-1:]}")
    raise CrossCompilerNotFoundError(
        f"no compiler for {target} here ({'; '.join(tried) or 'none installed'}): install "
        f"{package} (on Debian/Ubuntu: apt install {package})")


def count_instructions(assembly: str, patterns: Sequence[str] = ("vfmadd", "fmla")) -> dict:
    """Count lines of ``assembly`` that contain each pattern (e.g. FMA mnemonics, stack spills)."""
    return {p: sum(1 for line in assembly.splitlines() if p in line) for p in patterns}


# --------------------------------------------------------------------------------------------
# Sliders that own their output
#
# ipywidgets, IPython and the standard modules below are imported where they are used, as
# ``show_c`` does: the rest of this module works in a plain Python session without them.

class LivePanel:
    """Controls, a status line and one output area that always shows the current setting's result.

    ``show(**values)`` draws one result (it prints and calls ``plt.show()``) for the values of
    ``controls``. Every result, the first one included, is drawn inside the panel and replaces
    the one before, so what is on screen belongs to the controls' position. The status line says
    what is being computed while it is; moves made meanwhile only count, and when the draw
    ends the controls' position then is drawn, once (the last position wins). Displayed, the panel
    also carries a static copy of its first result (HTML) and one line saying the controls come
    alive when the notebook runs: that is what a saved notebook shows without a kernel.
    """

    def __init__(self, show: Callable[..., Any], controls: dict[str, Any], *,
                 busy: str = "measuring", manual: str | None = None, column: bool = False):
        import threading

        import ipywidgets as widgets

        self._show = show
        self._busy = busy
        self._manual = bool(manual)    # draw on the button only, not when a control moves
        self.controls = dict(controls)
        self.status = widgets.HTML()
        self.output = widgets.Output()
        self._shown: list[dict[str, Any]] = []    # nbformat outputs of the result on screen
        self._shown_values: dict[str, Any] = {}
        # Latest wins: every move counts one request; a draw reads the controls when it starts
        # and, when it ends, draws again if a request came meanwhile or the controls moved on.
        # Only one draw runs at a time, so none can finish after, and hide, a newer one.
        self._requests = 0           # moves asked for so far
        self._drawing = False        # a draw loop is scheduled or running
        # Widget messages may be handled on a thread of their own (ipykernel's subshells), so
        # a move can arrive while a result is drawn: one lock guards the request, another
        # makes draws take turns.
        self._request_lock = threading.Lock()
        self._draw_lock = threading.Lock()
        parts = list(self.controls.values())
        if manual:
            button = widgets.Button(description=manual, button_style="primary")
            button.on_click(lambda _: self._request())
            parts.append(button)
        else:
            for control in self.controls.values():
                control.observe(lambda _: self._request(), names="value")
        row = (widgets.VBox if column else widgets.HBox)(parts)
        self.widget = widgets.VBox([row, self.status, self.output])
        self.widget.add_class("krypton-live")

    def values(self) -> dict[str, Any]:
        """The controls' current values, by the names ``show`` takes them under."""
        return {name: control.value for name, control in self.controls.items()}

    def render(self) -> "LivePanel":
        """Draw the result of the current position now; an error propagates (nbval sees it)."""
        with self._request_lock:
            self._requests += 1
            self._drawing = True
        self._draw_latest(raise_errors=True)
        return self

    def _request(self) -> None:
        import asyncio

        with self._request_lock:
            self._requests += 1
            self.status.value = _status_html("waiting for the kernel:", _setting(self.values()))
            if self._drawing:          # the running draw loop sees this request when it ends
                return
            self._drawing = True
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:           # no event loop (a plain Python session): draw now
            self._draw_latest()
            return
        # Drawing a moment later, not in this callback, lets the kernel read the moves queued
        # behind this one first (quick key presses, a drag): each only counts a request, and
        # one draw serves them all.
        loop.call_later(0.2, self._draw_latest)

    def _draw_latest(self, raise_errors: bool = False) -> None:
        # Draw until the result on screen is for the controls' position and no request is
        # newer than the draw: a move made during a draw is drawn right after it.
        try:
            with self._draw_lock:
                while True:
                    with self._request_lock:
                        seen = self._requests
                    values = self.values()       # read now, not when the move was asked for
                    self._draw(values, raise_errors)
                    with self._request_lock:
                        moved = not self._manual and self.values() != values
                        if self._requests == seen and not moved:
                            self._drawing = False
                            return
        except BaseException:          # an error that propagates must not block later moves
            with self._request_lock:
                self._drawing = False
            raise

    def _draw(self, values: dict[str, Any], raise_errors: bool) -> None:
        import time
        import traceback

        setting = _setting(values)
        self.status.value = _status_html(f"{self._busy}", f"{setting} …", busy=True)
        start = time.perf_counter()
        try:
            outputs = _captured_outputs(lambda: self._show(**values))
            verdict = f"{setting}: done in {time.perf_counter() - start:.1f} s"
        except Exception:
            if raise_errors:
                self.status.value = _status_html("failed:", setting)
                raise
            outputs = [{"output_type": "stream", "name": "stderr",
                        "text": traceback.format_exc()}]
            verdict = f"{setting}: failed (the error is below)"
        self._shown, self._shown_values = outputs, values
        self.output.outputs = tuple(outputs)
        self.status.value = _status_html("", verdict)

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        import html

        bundle = self.widget._repr_mimebundle_(**kwargs)
        line = (f"The controls ({', '.join(self.controls)}) come alive when the notebook runs; "
                f"below, the result saved for {_setting(self._shown_values)}.")
        bundle["text/plain"] = line
        bundle["text/html"] = (f"<p><em>{html.escape(line)}</em></p>\n"
                               + "\n".join(_output_html(output) for output in self._shown))
        return bundle


def live(show: Callable[..., Any], *, busy: str = "measuring", manual: str | None = None,
         column: bool = False, **controls: Any) -> None:
    """Display ``controls`` (ipywidgets, by ``show``'s argument names) driving ``show``.

    The first result is drawn before the panel is displayed, so the saved notebook has it.
    ``manual="Measure"`` adds a button and draws only when it is pressed; ``busy`` is what the
    status line says while a result is computed ("compiling and measuring"). Returns nothing,
    so that a call on a cell's last line does not display the panel a second time; build a
    ``LivePanel`` to keep one.
    """
    from IPython.display import display

    display(LivePanel(show, controls, busy=busy, manual=manual, column=column).render())


def _setting(values: dict[str, Any]) -> str:
    return ", ".join(f"{name} = {value:.3g}" if isinstance(value, float) else f"{name} = {value}"
                     for name, value in values.items())


def _status_html(label: str, text: str, busy: bool = False) -> str:
    import html

    style = "color:#b26a00" if busy else "color:#555"
    mark = "&#9203; " if busy else ""     # an hourglass while the kernel works
    return f'<span style="{style}">{mark}{html.escape(f"{label} {text}".strip())}</span>'


def _captured_outputs(call: Callable[[], Any]) -> list[dict[str, Any]]:
    """Run ``call``; return what it printed and displayed, in order, as nbformat outputs."""
    import base64
    import sys

    from IPython import get_ipython
    from IPython.core.displaypub import DisplayPublisher

    outputs: list[dict[str, Any]] = []

    class Stream:
        def __init__(self, name: str):
            self.name = name

        def write(self, text: str) -> int:
            last = outputs[-1] if outputs else {}
            if last.get("output_type") == "stream" and last.get("name") == self.name:
                last["text"] += text
            else:
                outputs.append({"output_type": "stream", "name": self.name, "text": text})
            return len(text)

        def flush(self) -> None:
            pass

    class Publisher(DisplayPublisher):
        def publish(self, data, metadata=None, *args, **kwargs):
            # Widget state is JSON: binary images travel as base64, as in a saved notebook.
            data = {mime: base64.b64encode(value).decode() if isinstance(value, bytes) else value
                    for mime, value in data.items()}
            outputs.append({"output_type": "display_data", "data": data,
                            "metadata": metadata or {}})

        def clear_output(self, wait=False):
            outputs.clear()

    shell = get_ipython()
    saved = sys.stdout, sys.stderr, getattr(shell, "display_pub", None)
    sys.stdout, sys.stderr = Stream("stdout"), Stream("stderr")
    if shell is not None:
        shell.display_pub = Publisher()
    try:
        call()
    finally:
        sys.stdout, sys.stderr = saved[0], saved[1]
        if shell is not None:
            shell.display_pub = saved[2]
    return outputs


def _output_html(output: dict[str, Any]) -> str:
    """One captured output as static HTML: text as <pre>, a PNG inline, anything else as text."""
    import html

    if output["output_type"] == "stream":
        return f"<pre>{html.escape(output['text'])}</pre>"
    data = output.get("data", {})
    if "image/png" in data:
        return f'<img alt="the result" src="data:image/png;base64,{data["image/png"]}">'
    if "text/html" in data:
        return data["text/html"]
    return f"<pre>{html.escape(str(data.get('text/plain', '')))}</pre>"


LAB_SETTINGS = {"@jupyterlab/apputils-extension:kernels-settings": {"commsOverSubshells": "disabled"}}
"""The JupyterLab settings the course asks for. JupyterLab 4.6 sends widget messages to kernel
subshells by default ("perCommTarget"); driven in Chromium, a third quick key press on a slider
then never reached the kernel, and the panel stayed one position behind (issue #20). With
"disabled" every press reaches the kernel and the last one is drawn (tests/test_browser.py)."""


def write_lab_overrides(app_dir: Path | None = None) -> Path:
    """Write LAB_SETTINGS into JupyterLab's ``overrides.json`` for this Python environment (its
    application directory, ``jupyter lab path``), keeping whatever else the file holds. Returns
    the file's path. A learner can change the setting back in Settings > Kernel."""
    import json
    import sys
    app_dir = Path(app_dir) if app_dir else Path(sys.prefix) / "share" / "jupyter" / "lab"
    path = app_dir / "settings" / "overrides.json"
    current = json.loads(path.read_text()) if path.is_file() else {}
    for plugin, values in LAB_SETTINGS.items():
        current[plugin] = {**current.get(plugin, {}), **values}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(current, indent=2) + "\n")
    return path
