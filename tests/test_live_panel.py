"""krypton.notebook.LivePanel without a browser: what it draws, when, and what it saves.

tests/test_browser.py checks the same panels in JupyterLab; these run in a plain process
(no IPython), where ipywidgets still keep their values and outputs.
"""

from __future__ import annotations

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
