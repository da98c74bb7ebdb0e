"""The course as a static web site: every notebook with its saved outputs, an index, navigation.

    python build.py --site              # into site/; open site/index.html
    python build.py --site /tmp/course  # anywhere else

nbconvert renders each notebook as committed (nothing is executed), so the pages show the
outputs of the team's full run, plots included. A page has no kernel, so live widgets cannot
work there: their views are dropped, and what stays is what a widget panel saved for readers
without a kernel (``krypton.notebook.live`` saves a static copy of its result with a line saying
the controls come alive when the notebook runs). The exercises' solutions (notebooks/solutions/)
come along: each is copied as it is and rendered as a page of its own, and a notebook's link to
one leads to that page. The folder is ready for GitHub Pages (.github/workflows/pages.yml
publishes it).
"""

from __future__ import annotations

import html
import re
import shutil
import sys
from pathlib import Path

from krypton.files import atomic_write

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"

_STYLE = """
nav.krypton { font: 15px/1.4 system-ui, sans-serif; padding: 10px 24px; background: #263238; }
nav.krypton a { color: #eceff1; margin-right: 24px; text-decoration: none; }
nav.krypton a:hover { text-decoration: underline; }
"""


def notebook_paths(folder: Path) -> list[Path]:
    """The course's notebooks, in reading order (00_... to 08_...)."""
    return sorted(folder.glob("[0-9]*.ipynb"))


def title_of(notebook) -> str:
    """The notebook's first Markdown heading, without the #s."""
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            found = re.search(r"^#+\s*(.+)$", cell.source, flags=re.MULTILINE)
            if found:
                return found.group(1).strip()
    return "untitled"


def static_outputs(notebook) -> int:
    """Drop what needs a live kernel from a notebook's outputs; return how many were dropped.

    A widget view is dropped from every output; an output left with nothing but the widget's
    text repr (``HBox(children=(IntSlider(...``) goes whole, as does the saved widget state.
    """
    dropped = 0
    for cell in notebook.cells:
        kept = []
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if WIDGET_VIEW in data:
                del data[WIDGET_VIEW]
                if set(data) <= {"text/plain"}:
                    dropped += 1
                    continue
            kept.append(output)
        if "outputs" in cell:
            cell["outputs"] = kept
    notebook.metadata.pop("widgets", None)
    return dropped


def page_name(path: Path) -> str:
    return path.stem + ".html"


def _navigation(titles: list[tuple[str, str]], index: int | None, root: str = "") -> str:
    # ``root`` leads from the page's folder to the site's top ("../" from solutions/).
    links = [f'<a href="{root}index.html">Krypton: the course</a>']
    if index is not None:
        if index > 0:
            page, title = titles[index - 1]
            links.append(f'<a href="{page}">&larr; {html.escape(title)}</a>')
        if index + 1 < len(titles):
            page, title = titles[index + 1]
            links.append(f'<a href="{page}">{html.escape(title)} &rarr;</a>')
    return f'<style>{_STYLE}</style><nav class="krypton">{"".join(links)}</nav>'


def _with_navigation(page: str, navigation: str) -> str:
    page = re.sub(r"(<body[^>]*>)", lambda m: m.group(1) + navigation, page, count=1)
    return page.replace("</body>", navigation + "</body>", 1)


def _index_page(entries: list[tuple[str, str, str]]) -> str:
    items = "\n".join(f'<li><a href="{page}">{html.escape(title)}</a><br><small>'
                      f"{html.escape(question)}</small></li>" for page, title, question in entries)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Krypton: the course</title>
<style>{_STYLE}
body {{ margin: 0; }} main {{ font: 16px/1.5 system-ui, sans-serif; max-width: 46em; margin: 2em auto; }}
li {{ margin-bottom: 0.8em; }}</style></head>
<body>{_navigation([], None)}<main>
<h1>Krypton</h1>
<p>Build a fast matrix multiply in C, one idea at a time, and train a neural network on it.
These pages are the notebooks with the outputs of one full run; to change a knob and see what
your machine does, run them in Jupyter (see the repository's README).</p>
<ol>
{items}
</ol></main></body></html>
"""


def _question(notebook) -> str:
    # The paragraph after the title: the question the notebook answers.
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            paragraphs = [p.strip() for p in re.split(r"\n\s*\n", cell.source) if p.strip()]
            for paragraph in paragraphs:
                if not paragraph.startswith("#"):
                    return re.sub(r"\s+", " ", paragraph)
            return ""
    return ""


SOLUTIONS = "solutions"          # the folder of solutions, beside the notebooks and the pages


def solution_page(path: Path) -> str:
    """The page of a solution file: ``x.py`` -> ``x.py.html``, ``x.ipynb`` -> ``x.html``."""
    return path.stem + ".html" if path.suffix == ".ipynb" else path.name + ".html"


def solution_paths(folder: Path) -> list[Path]:
    """The solution files of the course (Python files and notebooks of notebooks/solutions/)."""
    return sorted(p for p in (folder / SOLUTIONS).glob("*")
                  if p.is_file() and p.suffix in (".py", ".ipynb"))


def _solution_html(path: Path, exporter) -> str:
    """A solution as a page: a notebook rendered like the others, Python source highlighted."""
    import nbformat
    from pygments import highlight
    from pygments.formatters import HtmlFormatter
    from pygments.lexers import PythonLexer

    if path.suffix == ".ipynb":
        notebook = nbformat.read(path, as_version=4)
        static_outputs(notebook)
        body, _ = exporter.from_notebook_node(notebook, resources={"metadata": {
            "name": path.stem}})
        return _with_navigation(body, _navigation([], None, "../"))
    formatter = HtmlFormatter(nowrap=False, cssclass="source")
    code = highlight(path.read_text(), PythonLexer(), formatter)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(path.name)}</title>
<style>{_STYLE}
body {{ margin: 0; }} main {{ max-width: 60em; margin: 1.5em auto; }}
{formatter.get_style_defs(".source")}</style></head>
<body>{_navigation([], None, "../")}<main><h1>{html.escape(path.name)}</h1>
<p><a href="{html.escape(path.name)}">the file as it is</a></p>
{code}</main></body></html>
"""


def _link_solutions(page: str, paths: list[Path]) -> str:
    # A notebook links to solutions/<file> (right in a clone); on the site, to the file's page.
    for path in paths:
        page = page.replace(f'href="{SOLUTIONS}/{path.name}"',
                            f'href="{SOLUTIONS}/{solution_page(path)}"')
    return page


def build_solutions(out: Path, folder: Path, exporter) -> list[Path]:
    """Copy every solution file into ``out``/solutions and render a page for each."""
    written = []
    for path in solution_paths(folder):
        target = out / SOLUTIONS / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        page = out / SOLUTIONS / solution_page(path)
        _write(page, _solution_html(path, exporter))
        written += [target, page]
    return written


def _write(path: Path, text: str) -> None:
    with atomic_write(path, "w") as file:
        file.write(text)


def build_site(out: Path, folder: Path, progress: bool = True) -> list[Path]:
    """Render every notebook of ``folder`` into ``out`` with an index page; return the pages."""
    import nbformat
    from nbconvert import HTMLExporter
    from tqdm.auto import tqdm

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"the site goes into a directory, but {str(out)!r} is a file: "
                         "choose another path")
    paths = notebook_paths(folder)
    if not paths:
        raise FileNotFoundError(f"no notebooks (NN_*.ipynb) in {folder}")
    out.mkdir(parents=True, exist_ok=True)
    notebooks = [nbformat.read(path, as_version=4) for path in paths]
    titles = [(page_name(path), title_of(nb)) for path, nb in zip(paths, notebooks)]
    exporter = HTMLExporter(template_name="lab")
    solutions = solution_paths(folder)
    written = []
    for index, (path, notebook) in enumerate(tqdm(list(zip(paths, notebooks)), desc="site",
                                                  unit="page", file=sys.stderr,
                                                  disable=not progress)):
        static_outputs(notebook)
        resources = {"metadata": {"name": titles[index][1]}}
        body, _ = exporter.from_notebook_node(notebook, resources=resources)
        target = out / page_name(path)
        body = _link_solutions(body, solutions)
        _write(target, _with_navigation(body, _navigation(titles, index)))
        written.append(target)
    written += build_solutions(out, folder, exporter)
    entries = [(page, title, _question(nb)) for (page, title), nb in zip(titles, notebooks)]
    _write(out / "index.html", _index_page(entries))
    _write(out / ".nojekyll", "")   # GitHub Pages: serve the files as they are, no Jekyll
    return [out / "index.html", *written]
