"""One source for times: every notebook header's time paragraph and the README course table come from the measured
numbers in benchmarks/course_time.json (written by benchmarks/course_time.py; ``--write-docs`` rewrites the docs)."""

import importlib.util
import json
import re
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def course_time():
    spec = importlib.util.spec_from_file_location("course_time", ROOT / "benchmarks" / "course_time.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def measured_data() -> dict:
    return json.loads((ROOT / "benchmarks" / "course_time.json").read_text())


def header(path: Path) -> str:
    return "".join(json.loads(path.read_text())["cells"][0]["source"])


def test_every_notebook_header_states_the_measured_times():
    ct, data = course_time(), measured_data()
    assert NOTEBOOKS
    for path in NOTEBOOKS:
        paras = [p for p in header(path).split("\n\n") if p.startswith(ct.MARK)]
        assert paras == [ct.header_line(path.stem, data)], (
            f"{path.name}: its time paragraph disagrees with benchmarks/course_time.json; "
            "run `python benchmarks/course_time.py --write-docs`")


def test_readme_course_table_states_the_measured_times():
    ct, data, readme = course_time(), measured_data(), (ROOT / "README.md").read_text()
    for path in NOTEBOOKS:
        rows = re.findall(rf"^\| `{path.stem}` \|.*\| ([^|]*) \| ([^|]*) \|$", readme, flags=re.M)
        assert rows == [ct.readme_cells(path.stem, data)], (path.stem, rows)


def test_measured_entries_carry_their_conditions():
    for mode in ("full", "fast"):
        for stem, e in measured_data().get(mode, {}).items():
            assert e["wall_s"] > 0 and e["cpu_s"] > 0 and e["threads"] >= 1 and e["load"] >= 0, (mode, stem)
            assert re.fullmatch(r"\d{4}-\d\d-\d\d", e["date"]), (mode, stem)


def test_write_docs_rewrites_headers_and_table(tmp_path):
    ct = course_time()
    (tmp_path / "notebooks").mkdir()
    for path in NOTEBOOKS[:2]:
        shutil.copy(path, tmp_path / "notebooks" / path.name)
    a, b = NOTEBOOKS[0].stem, NOTEBOOKS[1].stem
    (tmp_path / "README.md").write_text(f"| notebook | teaches | full | fast |\n|---|---|---:|---:|\n"
                                        f"| `{a}` | things | 1 h | 2 h |\n")
    data = {"full": {a: {"wall_s": 300.0, "cpu_s": 200.0, "ok": True, "threads": 2, "load": 1.5,
                         "date": "2026-01-02"}},
            "fast": {a: {"wall_s": 20.4, "cpu_s": 15.0, "ok": False, "threads": 2, "load": 3.0, "date": "2026-01-02"}}}
    assert ct.write_docs(data, root=tmp_path) == [b]  # b has no README row: reported, not invented
    text = (tmp_path / "README.md").read_text()
    assert f"| `{a}` | things | 5.0 min / 3.3 min | 20 s / 15 s (failed) |" in text
    head = header(tmp_path / "notebooks" / f"{a}.ipynb")
    assert "full mode 5.0 min / 3.3 min (2 threads, load 1.5, 2026-01-02, empty run cache)" in " ".join(head.split())
    assert "not measured" in header(tmp_path / "notebooks" / f"{b}.ipynb")
    ct.write_docs(data, root=tmp_path)  # idempotent: one time paragraph, the rest of the header kept
    again = header(tmp_path / "notebooks" / f"{a}.ipynb")
    assert again == head and again.count(ct.MARK) == 1
    assert again.split("\n\n")[0] == header(NOTEBOOKS[0]).split("\n\n")[0]


def test_a_shared_cache_run_says_so():
    # course order (--cache): later notebooks load the runs earlier ones trained; the docs must not pass that off
    # as a cold run
    ct = course_time()
    entry = {"wall_s": 100.0, "cpu_s": 150.0, "ok": True, "threads": 2, "load": 2.0, "date": "2026-12-01"}
    assert ct.measured(entry) == "1.7 min / 2.5 min"
    assert ct.measured({**entry, "cache": "shared"}) == "1.7 min / 2.5 min †"
    line = " ".join(ct.header_line("x", {"full": {"x": {**entry, "cache": "shared"}}}).split())
    assert "2026-12-01, run cache from the notebooks before it)" in line


def test_measurements_are_kept_as_they_go(tmp_path):
    ct = course_time()
    row = {"notebook": "04_x", "mode": "full", "wall_s": 1.0, "cpu_s": 2.0, "ok": True, "threads": 2, "load": 0.5,
           "date": "2026-12-01", "cache": "cold"}
    ct.store(tmp_path / "t.json", [row], None)
    data = ct.store(tmp_path / "t.json", [{**row, "notebook": "05_y"}], None)
    assert set(data["full"]) == {"04_x", "05_y"} and data["full"]["04_x"]["cache"] == "cold"


def test_slowest_cells_reads_nbclient_execution_times():
    import nbformat

    nb = nbformat.v4.new_notebook()
    for secs, src in ((2, "a = 1"), (30, "train()\nmore"), (0.5, "b = 2")):
        cell = nbformat.v4.new_code_cell(src)
        cell.metadata["execution"] = {"iopub.execute_input": "2026-12-02T07:00:00.000000Z",
                                      "shell.execute_reply": f"2026-12-02T07:00:{secs:09.6f}Z"}
        nb.cells.append(cell)
    nb.cells.append(nbformat.v4.new_markdown_cell("text"))
    assert course_time().slowest_cells(nb, n=2) == [(1, 30.0, "train()"), (0, 2.0, "a = 1")]
