"""Fixtures of the browser tests: JupyterLab serving a temporary copy of notebooks/, and headless Chromium.

Run by ``make test-browser``; ``bash tests/browser/setup.sh`` installs Debian's chromium and playwright first.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("CMLEARN_CHROMIUM", "/usr/bin/chromium"))
SETTINGS = ROOT / ".jupyter" / "lab" / "user-settings"
ARTIFACTS = ROOT / "test-artifacts" / "browser"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run"]


@dataclass
class Lab:
    """A running JupyterLab: where it serves, its token and the notebook folder it serves."""

    url: str
    token: str
    root: Path
    log: Path

    def notebook_url(self, name: str) -> str:
        # ?reset: start from an empty workspace (no tabs restored from an earlier session)
        return f"{self.url}/lab/tree/{name}?reset&token={self.token}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_until_up(url: str, proc: subprocess.Popen, log: Path, *, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"jupyter lab exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"jupyter lab did not answer {url} within {timeout} s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def lab(tmp_path_factory) -> Lab:
    """JupyterLab on 127.0.0.1 (free port, token) in a temp copy of notebooks/, fast mode; stopped after."""
    if not (SETTINGS / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings").exists():
        setup = ROOT / "tests" / "browser" / "setup.sh"
        subprocess.run(["bash", str(setup), str(Path(sys.executable).parent), "--settings-only"], check=True)
    base = tmp_path_factory.mktemp("lab")
    root = base / "notebooks"
    shutil.copytree(ROOT / "notebooks", root, ignore=shutil.ignore_patterns(".ipynb_checkpoints", "runs"))
    # Runs that `pytest --nbval-lax notebooks` trained (kernel cwd notebooks/, CMLEARN_CACHE default runs/)
    # are loaded, not retrained: this test checks the widgets; the notebook run has checked the training.
    cache = os.environ.get("CMLEARN_CACHE") or str(ROOT / "notebooks" / "runs")
    port, token = _free_port(), secrets.token_hex(16)
    env = dict(os.environ, CMLEARN_FAST="1", OMP_NUM_THREADS="1", JUPYTERLAB_SETTINGS_DIR=str(SETTINGS),
               JUPYTERLAB_WORKSPACES_DIR=str(base / "workspaces"), JUPYTER_RUNTIME_DIR=str(base / "runtime"),
               IPYTHONDIR=str(base / "ipython"), CMLEARN_CACHE=cache)
    env.pop("MPLBACKEND", None)  # the kernel's inline backend draws the figures
    cmd = [str(Path(sys.executable).parent / "jupyter"), "lab", "--no-browser", "--ip=127.0.0.1",
           f"--port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
           f"--ServerApp.root_dir={root}", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    log = base / "jupyter.log"
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=fh, stderr=subprocess.STDOUT,
                                start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(f"{url}/api/status?token={token}", proc, log)
        yield Lab(url=url, token=token, root=root, log=log)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)  # the server and the kernels it started
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if ARTIFACTS.is_dir():
            shutil.copy(log, ARTIFACTS / "jupyter.log")


@pytest.fixture(scope="session")
def browser():
    """Debian's headless Chromium driven by Playwright (no browser download)."""
    from playwright.sync_api import sync_playwright

    if not CHROMIUM.exists():
        raise FileNotFoundError(f"{CHROMIUM} not found: run `bash tests/browser/setup.sh .venv/bin` first")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()
