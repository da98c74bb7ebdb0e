"""krypton.notebook.show_diff: a rung's C change from the last, as a highlighted unified diff."""

from __future__ import annotations

from krypton.notebook import c_source, show_diff


def test_the_diff_marks_removed_and_added_lines_and_names_both_sides():
    old = "int f(void)\n{\n    return 1;\n}\n"
    new = "int f(void)\n{\n    int x = 2;\n    return x;\n}\n"
    text = show_diff(old, new, "old.c", "new.c").data
    lines = text.splitlines()
    assert lines[:2] == ["--- old.c", "+++ new.c"]
    assert "-    return 1;" in lines and "+    return x;" in lines
    assert "+    int x = 2;" in lines and " {" in lines   # context lines start with a space


def test_identical_sources_give_an_empty_diff():
    tiled = c_source("tiled", "kr_sgemm_tiled")
    assert show_diff(tiled, tiled).data == ""
