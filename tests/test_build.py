"""build.py's notebook post-processing: progress bars are dropped from saved outputs, the rest kept."""

import os
import subprocess
import sys
from pathlib import Path

import nbformat

import build


def widget_output(text):
    return nbformat.v4.new_output("display_data", data={
        "application/vnd.jupyter.widget-view+json": {"model_id": "x", "version_major": 2,
                                                     "version_minor": 0},
        "text/plain": text})


def test_progress_bars_are_dropped_and_other_outputs_kept():
    cell = nbformat.v4.new_code_cell("...")
    cell.outputs = [
        widget_output("sizes:   0%|          | 0/10 [00:00<?, ?it/s]"),
        widget_output("HBox(children=(IntSlider(value=2),))"),
        nbformat.v4.new_output("stream", name="stdout", text="100%| done 10/10 ["),
        widget_output("tile grid, M x N x K = 256 x 1024 x 1024:   0%|     | 0/9 [00:00<?, ?it/s]"),
    ]
    notebook = nbformat.v4.new_notebook(cells=[cell, nbformat.v4.new_markdown_cell("text")])
    assert build.drop_progress_bars(notebook) == 2
    kept = notebook.cells[0].outputs
    assert [o.output_type for o in kept] == ["display_data", "stream"]
    assert "HBox" in kept[0].data["text/plain"]


def test_a_size_too_large_for_memory_is_refused_before_compiling():
    root = Path(__file__).resolve().parent.parent
    for size, message in (("100000000", "more than half of this machine's"),
                          ("0", "--size must be a positive integer, got 0")):
        result = subprocess.run([sys.executable, "build.py", "--size", size], cwd=root,
                                capture_output=True, text=True, timeout=120,
                                env={**os.environ, "PYTHONPATH": str(root)})
        assert result.returncode == 2, result.stderr
        assert message in result.stderr and "Compiled" not in result.stdout
