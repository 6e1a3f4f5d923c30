"""The course's sliders, tested the way a student uses them: JupyterLab in headless Chromium (issue 8).

For each notebook that builds ipywidgets: open it, Run > Run All Cells (fast mode), wait for the kernel, then
move every slider (arrow key on its focused handle) and switch every dropdown of every panel; check that the
panel's figure or text changes each time, and that no widget shows the loading fallback or an error.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WIDGET_USE = re.compile(r"cmlearn\.widgets|ipywidgets|\w+_panel\(")  # cmlearn.course.panels and panels like it
BAD_TEXT = ("Loading widget", "Error displaying widget", "Traceback")
RUN_TIMEOUT_S = 150.0
UPDATE_TIMEOUT_S = 30.0
DOCS_SHOT = ROOT / "docs" / "widget_panel.png"


def widget_notebooks() -> list[str]:
    """The committed notebooks whose code uses ipywidgets (directly or through cmlearn's panels)."""
    out = []
    for p in sorted((ROOT / "notebooks").glob("*.ipynb")):
        cells = json.loads(p.read_text())["cells"]
        if any(c["cell_type"] == "code" and WIDGET_USE.search("".join(c["source"])) for c in cells):
            out.append(p.name)
    return out


NOTEBOOKS = widget_notebooks()

# One JSON snapshot of the notebook: kernel status, code-cell prompts, error text, widget fallbacks.
STATE_JS = """() => {
  const nb = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)');
  if (!nb) return null;
  const ind = nb.querySelector('.jp-Notebook-ExecutionIndicator');
  const prompts = [...nb.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt')]
                  .map(e => e.textContent.trim());
  const outputs = [...nb.querySelectorAll('.jp-OutputArea-output')].map(e => e.textContent);
  return {status: ind ? ind.dataset.status : null, prompts, outputs,
          sliders: nb.querySelectorAll('.widget-slider').length};
}"""

# Fingerprint of one panel (a cell output holding sliders): its images and its text widgets.
PANEL_JS = """(el) => ({
  images: [...el.querySelectorAll('img')].map(i => i.src.slice(-400) + i.src.length),
  svgs: [...el.querySelectorAll('svg')].map(s => s.innerHTML.length),
  text: [...el.querySelectorAll('.widget-html-content, .widget-label-basic, .jp-RenderedText, pre')]
        .map(e => e.textContent).join('|'),
  readouts: [...el.querySelectorAll('.widget-readout')].map(e => e.textContent).join('|'),
})"""


def wait_for_kernel(page, *, timeout: float, what: str) -> dict:
    """Poll until every code cell has run and the kernel is idle; fail on a traceback or a widget error."""
    deadline, state = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        state = page.evaluate(STATE_JS)
        if state:
            bad = [(t, o[:300]) for o in state["outputs"] for t in BAD_TEXT[1:] if t in o]
            assert not bad, f"{what}: error output {bad}"
            done = state["prompts"] and all(re.fullmatch(r"\[\d+\]:", p) for p in state["prompts"])
            if done and state["status"] == "idle":
                return state
        time.sleep(0.5)
    raise AssertionError(f"{what}: not finished after {timeout} s; last state {state and state['prompts']}, "
                         f"kernel {state and state['status']}")


def assert_no_widget_fallback(page, what: str) -> None:
    state = page.evaluate(STATE_JS)
    for o in state["outputs"]:
        for t in BAD_TEXT:
            assert t not in o, f"{what}: a widget shows {t!r}: {o[:300]!r}"
        # without the JupyterLab widget manager the kernel's text/plain repr would be shown instead
        fallback = re.match(r"\s*(VBox|HBox|Output|IntSlider|FloatSlider)\(", o)
        assert not fallback, f"{what}: widget not rendered: {o[:200]}"


def wait_for_change(page, panel, before: dict, *, what: str) -> dict:
    """Poll the panel until its figure or text differs from ``before`` and the kernel is idle again."""
    deadline, now = time.monotonic() + UPDATE_TIMEOUT_S, before
    while time.monotonic() < deadline:
        now = panel.evaluate(PANEL_JS)
        changed = any(now[k] != before[k] for k in ("images", "svgs", "text"))
        if changed and (now["images"] or now["svgs"]) and page.evaluate(STATE_JS)["status"] == "idle":
            time.sleep(0.3)  # let a redraw that is still arriving land
            return panel.evaluate(PANEL_JS)
        time.sleep(0.25)
    raise AssertionError(f"{what}: the panel's figure and text did not change within {UPDATE_TIMEOUT_S} s "
                         f"(readouts {before['readouts']!r} -> {now['readouts']!r})")


KERNEL_READY_JS = """() => {
  const nb = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)');
  const bar = document.querySelector('#jp-main-statusbar');
  return !!(nb && nb.querySelector('.jp-Cell') && bar && /\\|\\s*Idle/.test(bar.textContent));
}"""


def open_notebook(page, lab, name: str) -> None:
    """Open the notebook and wait until its cells are shown and its kernel reports Idle in the status bar."""
    page.goto(lab.notebook_url(name))
    deadline = time.monotonic() + 90
    while not page.evaluate(KERNEL_READY_JS):
        dialog = page.locator(".jp-Dialog", has_text="Select Kernel")
        if dialog.count():  # a person would accept the notebook's own kernel
            dialog.locator(".jp-mod-accept").click()
        assert time.monotonic() < deadline, f"{name}: the notebook or its kernel did not get ready in 90 s"
        time.sleep(0.3)


def run_all(page) -> None:
    """Run > Run All Cells, through the menu bar as a person would."""
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click()


@pytest.fixture(scope="session")
def started(lab, browser) -> dict:
    """Every widget notebook opened in its own browser context and started (Run All) at once, so the kernels
    (one core each in fast mode) run side by side; maps name -> (page, start time)."""
    out = {}
    try:
        for name in NOTEBOOKS:
            page = browser.new_context(viewport={"width": 1500, "height": 1000}).new_page()
            out[name] = (page, None)
            open_notebook(page, lab, name)
            run_all(page)
            out[name] = (page, time.monotonic())
        yield out
    finally:
        for page, _ in out.values():
            page.context.close()


def test_found_widget_notebooks():
    assert NOTEBOOKS, "no notebook in notebooks/ uses ipywidgets: nothing for the browser tests to check"


def move_slider(page, panel, slider, before: dict, *, what: str) -> dict:
    """Focus the slider's handle, press an arrow key (one step), and wait for the panel to redraw."""
    old = slider.locator(".widget-readout").text_content().strip()
    handle = slider.locator(".noUi-handle")
    at_max = handle.get_attribute("aria-valuenow") == handle.get_attribute("aria-valuemax")
    handle.focus()
    handle.press("ArrowLeft" if at_max else "ArrowRight")
    after = wait_for_change(page, panel, before, what=what)
    new = slider.locator(".widget-readout").text_content().strip()
    assert new != old, f"{what}: the readout stayed at {old!r}"
    print(f"{what}: {old} -> {new}")
    return after


def switch_dropdown(page, panel, select, before: dict, *, what: str) -> dict:
    """Pick the next option of a dropdown and wait for the panel to redraw."""
    options = select.locator("option").all_text_contents()
    current = select.evaluate("(s) => s.options[s.selectedIndex].text")
    other = options[(options.index(current) + 1) % len(options)]
    select.select_option(label=other)
    after = wait_for_change(page, panel, before, what=f"{what}: {current} -> {other}")
    print(f"{what}: {current} -> {other}")
    return after


SCHEDULE_NB = "07_sampling_and_editing.ipynb"
CD_NB = "04_consistency_distillation.ipynb"


def slider_by_label(panel, label: str):
    return panel.locator(".widget-slider").filter(
        has=panel.page.locator(".widget-label", has_text=re.compile(rf"^{re.escape(label)}$")))


def readouts(panel) -> dict:
    """label -> readout text of every slider of the panel."""
    out = {}
    sliders = panel.locator(".widget-slider")
    for j in range(sliders.count()):
        s = sliders.nth(j)
        out[s.locator(".widget-label").text_content().strip()] = s.locator(".widget-readout").text_content().strip()
    return out


def panel_of(page, label: str):
    """The output area holding a panel with a slider of this label."""
    return page.locator(".jp-OutputArea-output").filter(has=page.locator(".widget-slider")).filter(
        has=page.locator(".widget-label", has_text=re.compile(rf"^{re.escape(label)}$"))).first


def test_schedule_panel_keeps_the_values_code_sets_and_its_order(started, artifacts):
    """Notebook 07 (issue 18): after Run All the panel shows what the check cell set, (T, 1, 0.1), and keeps it
    (no slider snaps a value and sends it back); a time slider pushed past its neighbour stops one step short."""
    page, _ = started[SCHEDULE_NB]
    wait_for_kernel(page, timeout=RUN_TIMEOUT_S, what=f"{SCHEDULE_NB}: Run All")
    panel = panel_of(page, "tau2")
    panel.scroll_into_view_if_needed()
    page.wait_for_function("(el) => el.querySelector('img, svg') !== null", arg=panel.element_handle(),
                           timeout=30_000)
    time.sleep(3)  # a rendered slider that snapped a value would have sent it back by now
    wait_for_kernel(page, timeout=UPDATE_TIMEOUT_S, what=f"{SCHEDULE_NB}: settle")
    values = readouts(panel)
    assert values == {"calls": "3", "tau2": "1", "tau3": "0.1", "tau4": "0.05"}, values
    text = panel.evaluate(PANEL_JS)["text"]
    assert "schedule [80.0, 1.0, 0.1]" in text, text

    before = panel.evaluate(PANEL_JS)
    handle = slider_by_label(panel, "tau3").locator(".noUi-handle")
    handle.focus()
    handle.press("End")  # ask for the largest time: past tau2 = 1
    after = wait_for_change(page, panel, before, what=f"{SCHEDULE_NB}: tau3 -> End")
    values = readouts(panel)
    panel.screenshot(path=str(artifacts / "07_schedule_panel_clamped.png"))
    assert values["tau2"] == "1" and values["tau3"] == "0.8", values  # stopped one grid step below tau2
    assert "schedule [80.0, 1.0, 0.8]" in after["text"] and "stops at 0.8" in after["text"], after["text"]


def test_cd_panel_steps_over_the_trained_N(started):
    """Notebook 04 (issue 18): the N slider offers the trained grid sizes only (fast mode: 6, 18, 50)."""
    page, _ = started[CD_NB]
    wait_for_kernel(page, timeout=RUN_TIMEOUT_S, what=f"{CD_NB}: Run All")
    panel = panel_of(page, "N")
    handle = slider_by_label(panel, "N").locator(".noUi-handle")
    assert readouts(panel)["N"] == "6"  # what the check cell set
    span = (float(handle.get_attribute("aria-valuemin")), float(handle.get_attribute("aria-valuemax")))
    assert span == (0.0, 2.0), span  # three positions: the trained N
    assert "no trained run" not in panel.evaluate(PANEL_JS)["text"]


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_sliders_update_their_panels(name, started, artifacts):
    stem = Path(name).stem
    page, t0 = started[name]
    try:
        state = wait_for_kernel(page, timeout=RUN_TIMEOUT_S, what=f"{name}: Run All")
        print(f"{name}: all cells ran in {time.monotonic() - t0:.1f} s")
        assert state["sliders"] > 0, f"{name}: uses widgets but no slider was rendered"
        page.screenshot(path=str(artifacts / f"{stem}_after_run.png"))

        panels = page.locator(".jp-OutputArea-output").filter(has=page.locator(".widget-slider"))
        for i in range(panels.count()):  # every panel shows its first figure
            page.wait_for_function("(el) => el.querySelector('img, svg') !== null",
                                   arg=panels.nth(i).element_handle(), timeout=30_000)
        assert_no_widget_fallback(page, name)

        for i in range(panels.count()):
            panel = panels.nth(i)
            panel.scroll_into_view_if_needed()
            labels = {s.strip() for s in panel.locator(".widget-slider .widget-label").all_text_contents()}
            if {"N", "eps"} <= labels:  # the N / eps panel at its default values: the README's picture
                shot = artifacts / "widget_panel.png"
                panel.screenshot(path=str(shot))
                if not DOCS_SHOT.exists() or os.environ.get("CMLEARN_UPDATE_DOCS") == "1":
                    DOCS_SHOT.parent.mkdir(exist_ok=True)
                    shutil.copy(shot, DOCS_SHOT)
            state = panel.evaluate(PANEL_JS)
            sliders = panel.locator(".widget-slider")
            for j in range(sliders.count()):
                label = sliders.nth(j).locator(".widget-label").text_content().strip()
                what = f"{name} panel {i} slider {label!r}"
                state = move_slider(page, panel, sliders.nth(j), state, what=what)
                slug = re.sub(r"[^A-Za-z0-9]", "_", label)
                panel.screenshot(path=str(artifacts / f"{stem}_panel{i}_{slug}.png"))
            selects = panel.locator(".widget-dropdown select")
            for j in range(selects.count()):
                what = f"{name} panel {i} dropdown {j}"
                state = switch_dropdown(page, panel, selects.nth(j), state, what=what)
                panel.screenshot(path=str(artifacts / f"{stem}_panel{i}_dropdown{j}.png"))
        assert_no_widget_fallback(page, name)
    finally:
        page.screenshot(path=str(artifacts / f"{stem}_last.png"))
