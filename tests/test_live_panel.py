"""krypton.notebook.LivePanel without a browser: what it draws, when, and what it saves.

tests/test_browser.py checks the same panels in JupyterLab; these run in a plain process
(no IPython), where ipywidgets still keep their values and outputs.
"""

from __future__ import annotations

import json
import asyncio

import ipywidgets as widgets
import pytest

from krypton.notebook import LivePanel


def _panel(calls: list, **options) -> tuple[LivePanel, widgets.IntSlider]:
    slider = widgets.IntSlider(value=1, min=0, max=10, description="n")

    def show(n):
        calls.append(n)
        print(f"result for n = {n}")

    return LivePanel(show, {"n": slider}, **options), slider


def _texts(panel: LivePanel) -> list[str]:
    return [output["text"] for output in panel.output.outputs]


def test_the_first_result_is_drawn_inside_the_panel():
    calls: list = []
    panel, _ = _panel(calls)
    panel.render()
    assert calls == [1]
    assert _texts(panel) == ["result for n = 1\n"]
    assert "n = 1: done" in panel.status.value


def test_a_later_result_replaces_the_one_before():
    calls: list = []
    panel, slider = _panel(calls)
    panel.render()
    slider.value = 4        # no event loop here: drawn at once
    assert calls == [1, 4]
    assert _texts(panel) == ["result for n = 4\n"]


def test_moves_made_before_the_kernel_is_free_collapse_into_the_last():
    calls: list = []
    panel, slider = _panel(calls)
    panel.render()

    async def three_quick_moves():
        for value in (2, 3, 4):
            slider.value = value
        assert "waiting" in panel.status.value
        await asyncio.sleep(0.5)

    asyncio.run(three_quick_moves())
    assert calls == [1, 4]
    assert _texts(panel) == ["result for n = 4\n"]


def test_a_manual_panel_draws_only_when_its_button_is_pressed():
    calls: list = []
    panel, slider = _panel(calls, manual="Measure")
    panel.render()
    slider.value = 7
    assert calls == [1]
    button = next(c for c in panel.widget.children[0].children if isinstance(c, widgets.Button))
    button.click()
    assert calls == [1, 7]


def test_the_saved_output_is_a_static_copy_with_one_line_and_no_widget_repr():
    panel, _ = _panel([])
    panel.render()
    bundle = panel._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert "come alive when the notebook runs" in bundle["text/plain"]
    assert "children=" not in bundle["text/plain"]
    assert "come alive when the notebook runs" in bundle["text/html"]
    assert "<pre>result for n = 1\n</pre>" in bundle["text/html"]


def test_an_error_in_the_first_result_propagates_and_a_later_one_is_shown():
    slider = widgets.IntSlider(value=0)

    def show(n):
        return 1 / n

    panel = LivePanel(show, {"n": slider})
    with pytest.raises(ZeroDivisionError):
        panel.render()
    slider.value = 1
    slider.value = 0
    assert "failed" in panel.status.value
    assert "ZeroDivisionError" in panel.output.outputs[0]["text"]


def _slow_panel(calls: list, moves_during_first_run: list, mover) -> tuple[LivePanel, object]:
    """A panel whose first run is slow and, while it runs, the slider is moved by ``mover``."""
    slider = widgets.IntSlider(value=1, min=0, max=10, description="n")

    def show(n):
        calls.append(n)
        if len(calls) == 1:
            mover(slider, moves_during_first_run)
        print(f"result for n = {n}")

    return LivePanel(show, {"n": slider}), slider


def _move_now(slider, values):
    # As a widget message handled while the run is busy: each move calls the panel at once.
    for value in values:
        slider.value = value


def test_quick_moves_during_a_slow_run_end_on_the_last_position():
    calls: list = []
    panel, slider = _slow_panel(calls, [2, 3, 4], _move_now)
    panel.render()
    assert slider.value == 4
    assert calls[-1] == 4 and calls.count(4) == 1, calls
    assert _texts(panel) == ["result for n = 4\n"]
    assert "n = 4: done" in panel.status.value
    assert calls == [1, 4], "the moves made during the run were drawn one by one"


def test_quick_moves_from_another_thread_during_a_slow_run_end_on_the_last_position():
    import threading
    import time

    def move_from_a_thread(slider, values):
        def moves():
            for value in values:
                time.sleep(0.02)
                slider.value = value
        mover = threading.Thread(target=moves)
        mover.start()
        mover.join()
        time.sleep(0.05)            # the first run goes on after the moves

    calls: list = []
    panel, slider = _slow_panel(calls, [2, 3, 4], move_from_a_thread)
    panel.render()
    assert _texts(panel) == ["result for n = 4\n"]
    assert "n = 4: done" in panel.status.value
    assert calls == [1, 4]


def test_quick_moves_during_a_slow_scheduled_run_end_on_the_last_position():
    import time

    calls: list = []
    slider = widgets.IntSlider(value=1, min=0, max=10, description="n")

    def show(n):
        calls.append(n)
        if n == 2:              # the run for the first move is slow; three presses come in it
            time.sleep(0.05)
            for value in (3, 4, 5):
                slider.value = value
        print(f"result for n = {n}")

    panel = LivePanel(show, {"n": slider})
    panel.render()

    async def moves():
        slider.value = 2
        await asyncio.sleep(1.0)

    asyncio.run(moves())
    assert calls == [1, 2, 5]
    assert _texts(panel) == ["result for n = 5\n"]


def test_lab_overrides_set_the_sliders_setting_and_keep_the_rest(tmp_path):
    from krypton.notebook import LAB_SETTINGS, write_lab_overrides
    settings = tmp_path / "settings"
    settings.mkdir()
    (settings / "overrides.json").write_text(json.dumps(
        {"@jupyterlab/apputils-extension:themes": {"theme": "JupyterLab Dark"},
         "@jupyterlab/apputils-extension:kernels-settings": {"other": 1,
                                                             "commsOverSubshells": "perCommTarget"}}))
    path = write_lab_overrides(tmp_path)
    written = json.loads(path.read_text())
    assert written["@jupyterlab/apputils-extension:themes"] == {"theme": "JupyterLab Dark"}
    plugin = "@jupyterlab/apputils-extension:kernels-settings"
    assert written[plugin] == {"other": 1, **LAB_SETTINGS[plugin]}
    assert written[plugin]["commsOverSubshells"] == "disabled"
