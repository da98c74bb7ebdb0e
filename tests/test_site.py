"""`python build.py --site` renders every notebook, with its plots, into a static site.

Marked slow: rendering nine notebooks with nbconvert takes a while on 2 shared cores.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

import build
from krypton import site

pytestmark = pytest.mark.slow

NOTEBOOKS = Path(build.__file__).resolve().parent / "notebooks"


def _saved_pictures(notebook) -> int:
    # PNGs a reader should see: image outputs, and images inside a widget panel's static HTML.
    count = 0
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if "image/png" in data:
                count += 1
            elif "text/html" in data:
                count += "".join(data["text/html"]).count("data:image/png")
    return count


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    assert build.main(["--site", str(out)]) == 0
    return out


def test_every_notebook_has_a_page_linked_from_the_index(built):
    index = (built / "index.html").read_text()
    paths = site.notebook_paths(NOTEBOOKS)
    assert len(paths) >= 9
    for path in paths:
        page = built / site.page_name(path)
        assert page.is_file(), f"no page for {path.name}"
        assert f'href="{page.name}"' in index
    assert (built / ".nojekyll").exists()


def test_every_page_shows_its_plots_and_navigation(built):
    paths = site.notebook_paths(NOTEBOOKS)
    for number, path in enumerate(paths):
        notebook = nbformat.read(path, as_version=4)
        site.static_outputs(notebook)
        text = (built / site.page_name(path)).read_text()
        expected = _saved_pictures(notebook)
        assert expected > 0, f"{path.name} has no saved plot: it was committed without outputs"
        assert text.count("data:image/png") >= expected, f"{path.name}: plots missing"
        assert 'href="index.html"' in text
        if number + 1 < len(paths):
            assert f'href="{site.page_name(paths[number + 1])}"' in text


def test_pages_show_no_raw_widget_text(built):
    for path in site.notebook_paths(NOTEBOOKS):
        text = (built / site.page_name(path)).read_text()
        found = re.search(r"\b(interactive|HBox|VBox|IntSlider)\(children=", text)
        assert found is None, f"{path.name} shows a widget's text repr: {found.group(0)}"


def test_every_solution_is_copied_and_has_a_page(built):
    solutions = site.solution_paths(NOTEBOOKS)
    assert solutions, "notebooks/solutions/ holds no solution"
    for path in solutions:
        copy = built / site.SOLUTIONS / path.name
        assert copy.read_bytes() == path.read_bytes(), f"{path.name} not copied as it is"
        page = (built / site.SOLUTIONS / site.solution_page(path)).read_text()
        assert 'href="../index.html"' in page, f"{path.name}: no way back to the index"
        if path.suffix == ".py":    # the source is on the page (its first def, highlighted)
            name = re.search(r"^def (\w+)", path.read_text(), flags=re.MULTILINE)
            assert name is None or name.group(1) in page, f"{path.name}: source missing"


def test_every_link_to_a_solution_leads_to_a_file_of_the_site(built):
    links = 0
    for path in site.notebook_paths(NOTEBOOKS):
        text = (built / site.page_name(path)).read_text()
        for target in re.findall(r'href="(solutions/[^"#]+)"', text):
            links += 1
            assert (built / target).is_file(), f"{path.name} links to {target}, not on the site"
            assert target.endswith(".html"), f"{path.name} links to the raw file {target}"
    notebooks_linking = [p for p in site.notebook_paths(NOTEBOOKS)
                         if "](solutions/" in p.read_text()]
    assert links >= len(notebooks_linking), "a notebook's link to its solutions was lost"
