"""The notebooks' claims live in "Check" cells, each followed by the code cell that asserts them (issue 18).

``pytest --nbval-lax notebooks`` (fast mode) runs those asserts; this test makes sure that every stated check has
one, and that a check whose text speaks of one mode ("in full mode ...", "in fast mode ...") asserts something that
depends on the mode (the ``fast`` flag or ``cmlearn.pick``), so a full-mode finding is never stated as if fast mode
showed it.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("[0-9][0-9]_*.ipynb"))
CHECK = re.compile(r"^\s*(#+\s*|\*\*)Check\b", re.MULTILINE)  # "### Check ..." or "**Check.** ..." paragraphs
ONE_MODE = re.compile(r"\b(full|fast)[- ]mode\b", re.IGNORECASE)


def cells(path: Path) -> list[dict]:
    return json.loads(path.read_text())["cells"]


def source(cell: dict) -> str:
    return "".join(cell["source"])


def checks(path: Path) -> list[tuple[int, str, str]]:
    """(index, check text, the next cell's code) for every markdown cell with a Check paragraph."""
    cs = cells(path)
    out = []
    for i, c in enumerate(cs):
        if c["cell_type"] == "markdown" and CHECK.search(source(c)):
            nxt = cs[i + 1] if i + 1 < len(cs) else None
            code = source(nxt) if nxt is not None and nxt["cell_type"] == "code" else ""
            out.append((i, source(c)[CHECK.search(source(c)).start():], code))
    return out


def mode_aware(tree: ast.AST) -> bool:
    """True when the code reads the mode: the notebook's ``fast`` flag, ``fast_mode()`` or ``pick(...)``."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id in ("fast", "fast_mode", "pick"):
            return True
        if isinstance(node, ast.Attribute) and node.attr in ("fast_mode", "pick"):
            return True
    return False


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_check_is_asserted_in_the_mode_it_speaks_of(path):
    found = checks(path)
    assert found, f"{path.name}: no Check cell (every notebook states at least one checked claim)"
    for i, text, code in found:
        where = f"{path.name} cell {i} ({text.splitlines()[0][:60]!r})"
        assert code, f"{where}: a Check must be followed by the code cell that asserts it"
        tree = ast.parse(code)
        assert any(isinstance(n, ast.Assert) for n in ast.walk(tree)), f"{where}: the next code cell asserts nothing"
        if ONE_MODE.search(text):
            assert mode_aware(tree), (f"{where}: the text speaks of one mode ({ONE_MODE.search(text).group(0)!r}) "
                                      "but no assert depends on the mode (use `fast` or cmlearn.pick)")


def test_the_checker_catches_what_it_should(tmp_path):
    def nb(*cs):
        p = tmp_path / "99_x.ipynb"
        p.write_text(json.dumps({"cells": [{"cell_type": t, "source": [s]} for t, s in cs]}))
        return p

    good = nb(("markdown", "**Check.** In full mode it is good."), ("code", "assert x if not fast else y"))
    test_every_check_is_asserted_in_the_mode_it_speaks_of(good)
    for bad in (nb(("markdown", "## Intro")),  # no check at all
                nb(("markdown", "### Check: it works"), ("code", "print(1)")),  # no assert
                nb(("markdown", "### Check: it works"), ("markdown", "text")),  # no code cell
                nb(("markdown", "**Check.** In fast mode it is poor."), ("code", "assert x"))):  # mode-blind
        with pytest.raises(AssertionError):
            test_every_check_is_asserted_in_the_mode_it_speaks_of(bad)
