"""The notebooks' controls, checked the way a learner meets them: in JupyterLab, in Chromium.

For every notebook with a widget panel (``krypton.notebook.live``), the test starts JupyterLab
headless on localhost (quick mode, a temporary root holding copies of the notebooks), opens the
notebook in Chromium driven by Playwright, runs all its cells, moves the panel's first slider
by three quick arrow-key presses (or picks another option of its first dropdown), presses
Measure where the panel has it, and checks that exactly one current result is shown: the
status line names the control's final value and says done, the panel's output holds one plot
(or the one message of a refused setting), and no plot is left outside the panel. A screenshot
of each panel after the move is saved in ``$KRYPTON_ARTIFACTS/browser`` (default
``results/browser``), which CI keeps as an artifact.

``$KRYPTON_BROWSER_NOTEBOOKS`` (prefixes, e.g. ``01 05 09``) limits the test to some of the
notebooks: .ci/run, which has 30 minutes on 2 cores, runs three (a cache simulation, a
Measure button over kernel builds, a training run); ``python -m pytest -m slow`` on its own
runs them all.

It uses Debian's ``chromium`` (``/usr/bin/chromium``, or ``$KRYPTON_CHROMIUM``) and
``pip install playwright``; never ``playwright install``, which downloads a browser. It skips,
saying which, where either is missing. Marked slow: it executes every such notebook.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

from krypton.notebook import LAB_SETTINGS

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = REPO / "notebooks"
CHROMIUM = os.environ.get("KRYPTON_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("KRYPTON_ARTIFACTS", REPO / "results")) / "browser"
TOKEN = "krypton-browser-test"
RUN_TIMEOUT = 900            # seconds for one notebook's Run All, quick mode, loaded machine
MOVE_TIMEOUT = 300           # seconds for one recompute after a move


def _panel_notebooks() -> list[str]:
    """The notebooks with a panel, or those of them that $KRYPTON_BROWSER_NOTEBOOKS names."""
    names = []
    for path in sorted(NOTEBOOKS.glob("[0-9]*.ipynb")):
        notebook = nbformat.read(path, as_version=4)
        if any(re.search(r"\blive\(", cell.source) for cell in notebook.cells
               if cell.cell_type == "code"):
            names.append(path.name)
    wanted = os.environ.get("KRYPTON_BROWSER_NOTEBOOKS", "").replace(",", " ").split()
    if wanted:
        unknown = [w for w in wanted if not any(n.startswith(w) for n in names)]
        if unknown:
            raise ValueError(f"KRYPTON_BROWSER_NOTEBOOKS names {unknown}, which match no "
                             f"notebook with a panel; choose prefixes of {names}")
        names = [n for n in names if n.startswith(tuple(wanted))]
    return names


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _api(base: str, path: str, method: str = "GET"):
    request = urllib.request.Request(f"{base}{path}", method=method,
                                     headers={"Authorization": f"token {TOKEN}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        body = response.read()
    return json.loads(body) if body else None


def _write_settings(settings: Path) -> None:
    # Render every cell (no windowing: the test reads cells that are off-screen) and ask for
    # no news or update checks, which would need the internet.
    for plugin, values in {
        "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
        # What `python build.py` writes for learners (krypton.notebook.LAB_SETTINGS: widget
        # messages not over kernel subshells, issue #20);
        # KRYPTON_LAB_COMMS_OVER_SUBSHELLS=perCommTarget tries JupyterLab 4.6's own default.
        "@jupyterlab/apputils-extension/kernels-settings": {
            "commsOverSubshells": os.environ.get(
                "KRYPTON_LAB_COMMS_OVER_SUBSHELLS",
                LAB_SETTINGS["@jupyterlab/apputils-extension:kernels-settings"]["commsOverSubshells"])},
        "@jupyterlab/apputils-extension/notification": {"fetchNews": "false",
                                                        "checkForUpdates": False},
    }.items():
        target = settings / f"{plugin}.jupyterlab-settings"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(values))


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    pytest.importorskip("jupyterlab", reason="JupyterLab is not installed: pip install -e '.[dev]'")
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install chromium "
                    "(or set KRYPTON_CHROMIUM to a Chromium or Chrome binary)")
    root = tmp_path_factory.mktemp("lab")
    for name in _panel_notebooks():
        shutil.copy(NOTEBOOKS / name, root / name)
    settings = root / ".settings"
    _write_settings(settings)
    port = _free_port()
    env = {**os.environ, "KRYPTON_QUICK": "1", "JUPYTERLAB_SETTINGS_DIR": str(settings),
           "JUPYTERLAB_WORKSPACES_DIR": str(root / ".workspaces"),
           "JUPYTER_RUNTIME_DIR": str(root / ".runtime"),
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "MPLBACKEND": "module://matplotlib_inline.backend_inline"}
    log = open(root / "jupyterlab.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
         f"--IdentityProvider.token={TOKEN}", f"--ServerApp.root_dir={root}",
         *(["--allow-root"] if os.geteuid() == 0 else []),
         "--LabApp.expose_app_in_browser=True",
         "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
        cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                _api(base, "/api/status")
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    log.flush()
                    pytest.fail("JupyterLab did not start:\n"
                                + (root / "jupyterlab.log").read_text())
                time.sleep(0.5)
        yield base
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


@pytest.fixture(scope="module")
def browser(lab):
    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason="Playwright is not installed: pip install playwright")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                              args=["--no-sandbox"])
        yield chromium
        chromium.close()


def _front_notebook(page) -> str:
    # The notebook tab in front, by its id: other tabs hold other notebooks' cells.
    page.wait_for_function("() => window.jupyterapp && window.jupyterapp.shell.currentWidget"
                           " && window.jupyterapp.shell.currentWidget.node"
                           ".querySelector('.jp-Notebook')", timeout=120_000)
    return "#" + page.evaluate("() => window.jupyterapp.shell.currentWidget.id")


def _run_all(page, notebook: str) -> None:
    # The toolbar says idle before a kernel exists, and a Run All sent then does nothing:
    # wait for the status bar to show a kernel that is idle, then check a cell started.
    page.wait_for_function("() => /\\| Idle/.test(document.querySelector('#jp-main-statusbar')"
                           "?.textContent || '')", timeout=180_000)
    for _ in range(5):
        # As a learner does it: Run > Run All Cells (a command sent by script did nothing here).
        page.locator(f"{notebook} .jp-Cell").first.click()
        page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
        page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
        try:
            page.wait_for_function(f"""() => [...document.querySelectorAll(
                '{notebook} .jp-InputPrompt')].some(p => p.textContent.includes('*'))""",
                                   timeout=15_000)
            break
        except Exception:
            continue
    else:
        pytest.fail("Run All did not start any cell")
    quiet_polls, deadline = 0, time.monotonic() + RUN_TIMEOUT
    while quiet_polls < 4:
        assert time.monotonic() < deadline, "Run All did not finish in time"
        busy = page.evaluate(f"""() => [...document.querySelectorAll('{notebook} .jp-InputPrompt')]
            .some(p => p.textContent.includes('*')) || document.querySelector(
            '{notebook} .jp-Notebook-ExecutionIndicator')?.getAttribute('data-status') !== 'idle'""")
        quiet_polls = 0 if busy else quiet_polls + 1
        time.sleep(1)


def _errors(page, notebook: str) -> str:
    return page.evaluate(f"""() => [...document.querySelectorAll(
        '{notebook} [data-mime-type="application/vnd.jupyter.stderr"]')]
        .map(e => e.textContent).filter(t => t.includes('Error')).join('\\n')""")


def _position(control) -> int:
    # Where the control sits among the panel's controls: the status line names them in order.
    return control.evaluate("e => [...e.parentElement.children].indexOf(e)")


def _move(panel, presses: int = 3):
    """Move the panel's first slider by ``presses`` quick key presses toward the side with more
    room, as a learner tapping an arrow key does (or pick another dropdown option).

    Returns the control's position among the panel's controls, its value before the move and a
    function that reads the value it shows now.
    """
    sliders = panel.locator(".widget-slider")
    if sliders.count():
        slider = sliders.first
        handle = slider.locator(".noUi-handle").first
        now = float(handle.get_attribute("aria-valuenow"))
        top = float(handle.get_attribute("aria-valuemax"))
        bottom = float(handle.get_attribute("aria-valuemin"))
        before = slider.locator(".widget-readout").text_content().strip()
        handle.focus()
        key = "ArrowRight" if top - now >= now - bottom else "ArrowLeft"
        for _ in range(presses):    # no wait between presses: they reach a busy kernel
            handle.press(key)
        readout = slider.locator(".widget-readout")
        for _ in range(50):
            if readout.text_content().strip() != before:
                break
            time.sleep(0.1)
        assert readout.text_content().strip() != before, "the slider did not move"
        return _position(slider), before, lambda: readout.text_content().strip()
    dropdown = panel.locator(".widget-dropdown").first
    select = dropdown.locator("select")
    options = select.locator("option").all_text_contents()
    current = select.evaluate("s => s.options[s.selectedIndex].text")
    choice = next(o for o in options if o != current)
    select.select_option(label=choice)
    return _position(dropdown), current, lambda: select.evaluate(
        "s => s.options[s.selectedIndex].text")


def _shows_done(status: str, position: int, value: str) -> bool:
    """True when the status line says done, for a setting whose control at ``position`` is ``value``."""
    if "done" not in status:
        return False
    settings = re.findall(r"(\w+) = ([^,:]+)", status.split(":")[0])
    return position < len(settings) and _same_value(settings[position][1].strip(), value)


def _same_value(shown: str, wanted: str) -> bool:
    try:
        return abs(float(shown) - float(wanted)) <= 0.01 * abs(float(wanted)) + 1e-12
    except ValueError:
        return shown == wanted


@pytest.mark.parametrize("name", _panel_notebooks())
def test_moving_a_control_shows_exactly_one_current_result(browser, lab, name):
    if name.startswith(("09", "10", "11")):  # they train on real data
        from krypton import data

        if not (data.find_local("mnist") or data.find_local("fashion-mnist")):
            pytest.skip(f"notebook {name} needs MNIST or Fashion-MNIST: "
                        "sudo apt-get install dataset-fashion-mnist")
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        page.goto(f"{lab}/lab/tree/{name}?reset&token={TOKEN}")
        notebook = _front_notebook(page)
        _run_all(page, notebook)
        panel = page.locator(f"{notebook} .krypton-live").first
        assert panel.count(), f"no widget panel after Run All; errors:\n{_errors(page, notebook)}"
        status = panel.locator(".widget-html").first
        before = status.text_content()
        position, old_value, shown_value = _move(panel)
        measure = panel.locator("button", has_text="Measure")
        if measure.count():
            measure.first.click()
        # Presses that arrive while a result is drawn wait for it, so earlier positions may
        # be drawn first; the panel must end on the position the control shows after the last
        # press (the last position wins, issue #20), and stay there. (That position is read again each time: under load, ipywidgets may settle a
        # control one step short of quick presses, and the panel must follow the control.)
        deadline, seen = time.monotonic() + MOVE_TIMEOUT, [before]
        while not _shows_done(text := status.text_content(), position, value := shown_value()) \
                or value == old_value:
            seen += [text] if text != seen[-1] else []
            assert "failed" not in text, f"the panel failed: {panel.text_content()}"
            assert time.monotonic() < deadline, \
                f"no result for the control's value {value!r}; the status line read: {seen}"
            time.sleep(0.1)
        time.sleep(1.5)
        assert status.text_content() == text and shown_value() == value, \
            "the panel or its control changed again after the last result"
        output = panel.locator(".widget-output")
        pictures = output.locator("img").count()
        if "Refused" in output.text_content():
            assert pictures == 0, "a refused setting still shows a plot"
        else:
            assert pictures == 1, f"{pictures} plots in the panel, expected the current one"
        cell = panel.locator("xpath=ancestor::div[contains(@class, 'jp-Cell')][1]")
        assert cell.locator(".krypton-live").count() == 1, "the cell shows the panel twice"
        outside = cell.locator(".jp-OutputArea-output img").count() - \
            cell.locator(".krypton-live img").count()
        assert outside == 0, f"{outside} stale plots outside the panel"
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        panel.scroll_into_view_if_needed()
        panel.screenshot(path=str(ARTIFACTS / f"{Path(name).stem}.png"))
    finally:
        page.close()
        for session in _api(lab, "/api/sessions") or []:
            _api(lab, f"/api/sessions/{session['id']}", method="DELETE")


def test_a_saved_notebook_shows_each_panels_picture_before_it_runs(browser, lab, tmp_path):
    # As a learner who clones the repository and opens a notebook: its saved outputs come
    # from a run elsewhere, so it is untrusted and no kernel has its widgets.
    import nbclient

    names = _panel_notebooks()
    name = next((n for n in names if n.startswith("01")), names[0])
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    env = {"KRYPTON_QUICK": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    saved_env = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        nbclient.NotebookClient(notebook, timeout=RUN_TIMEOUT, kernel_name="python3",
                                resources={"metadata": {"path": str(tmp_path)}}).execute()
    finally:
        for key, value in saved_env.items():
            os.environ.pop(key) if value is None else os.environ.__setitem__(key, value)
    contents = {"type": "notebook", "format": "json", "content": notebook}
    request = urllib.request.Request(f"{lab}/api/contents/saved-{name}", method="PUT",
                                     data=json.dumps(contents).encode(),
                                     headers={"Authorization": f"token {TOKEN}",
                                              "Content-Type": "application/json"})
    urllib.request.urlopen(request, timeout=30).close()
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        page.goto(f"{lab}/lab/tree/saved-{name}?reset&token={TOKEN}")
        front = _front_notebook(page)
        page.wait_for_function(f"() => document.querySelector('{front}')?.textContent"
                               ".includes('come alive when the notebook runs')", timeout=60_000)
        cell = page.locator(f"{front} .jp-Cell", has_text="come alive when the notebook runs")
        assert cell.count() >= 1
        text = cell.first.locator(".jp-OutputArea").text_content()
        assert not re.search(r"\b(interactive|HBox|VBox)\(children=", text), text[:300]
        assert cell.first.locator(".jp-OutputArea img").count() >= 1, "no saved picture shown"
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        cell.first.locator(".jp-OutputArea").screenshot(
            path=str(ARTIFACTS / f"saved-{Path(name).stem}.png"))
    finally:
        page.close()
        for session in _api(lab, "/api/sessions") or []:
            _api(lab, f"/api/sessions/{session['id']}", method="DELETE")
