"""The run panel in a real browser: JupyterLab serves examples/quickstart.ipynb, headless Chromium runs it.

Debian's Chromium (``apt-get install chromium``; ``.ci/run`` installs it) driven by Playwright's
Python API with ``executable_path`` (Playwright's own browser download cannot run here). The test
runs all cells, presses the panel's Run button, and checks in the page that the progress bar
moves and completes and that the preview shows rows; it saves a screenshot to
``tests/screenshots/panel.png``. Without Chromium it is skipped, unless
DISTILFRAME_REQUIRE_BROWSER=1 (set by ``.ci/run``), where that is a failure.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "examples/quickstart.ipynb"
SCREENSHOT = ROOT / "tests/screenshots/panel.png"
CHROMIUM = os.environ.get("CHROMIUM", shutil.which("chromium") or "/usr/bin/chromium")
# Chromium on a machine without internet: no background connections, no sandbox as root.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TOKEN = "distilframe-browser-test"
ROWS = 20  # examples/reviews.csv

PANEL = ".distilframe-panel"
RUN = f"{PANEL} button.distilframe-run"
STOP = f"{PANEL} button.distilframe-stop"
BAR = f"{PANEL} .distilframe-progress .progress-bar"  # its style.width goes 0% .. 100%
PROGRESS_TEXT = f"{PANEL} .distilframe-progress-text"
MESSAGE = f"{PANEL} .distilframe-message"
PREVIEW_ROWS = f"{PANEL} table.distilframe-preview-table tbody tr"
SEARCH = f"{PANEL} .distilframe-search input"
SEARCH_ROWS = f"{PANEL} table.distilframe-search-table tbody tr"
SEARCH_MESSAGE = f"{PANEL} .distilframe-search-message"
QUERY = "Great sound and the battery lasts all week. Very happy with them."  # row 1 of examples/reviews.csv

# Every change of the bar, recorded in the page: proof that the kernel thread's updates arrive.
OBSERVE = """([bar]) => {
  const el = document.querySelector(bar);
  window.__widths = [];
  new MutationObserver(() => window.__widths.push(el.style.width)).observe(el, {attributes: true});
}"""
KERNEL_IDLE = """(name) => {
  const app = window.jupyterapp;
  if (!app) return false;
  const nb = Array.from(app.shell.widgets('main')).find(w => w.context && w.context.path === name);
  const k = nb && nb.sessionContext.session && nb.sessionContext.session.kernel;
  if (!(k && k.status === 'idle' && k.connectionStatus === 'connected')) return false;
  app.shell.activateById(nb.id);
  return true;
}"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Lab:
    """JupyterLab on 127.0.0.1 with its own Jupyter folders (nothing from ~, nothing online)."""

    def __init__(self, workdir: Path):
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.dirs = {k: workdir / k for k in ("root", "config", "data", "runtime", "ipython", "settings",
                                              "workspaces")}
        for d in self.dirs.values():
            d.mkdir(parents=True)
        for name in ("quickstart.ipynb", "reviews.csv", "reviews.xlsx"):
            shutil.copy(ROOT / "examples" / name, self.dirs["root"] / name)
        settings = self.dirs["settings"] / "@jupyterlab/apputils-extension/notification.jupyterlab-settings"
        settings.parent.mkdir(parents=True)
        settings.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))  # no news popup
        self.log = workdir / "lab.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        bin_dir = Path(sys.executable).parent
        env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
                   JUPYTER_CONFIG_DIR=str(self.dirs["config"]), JUPYTER_DATA_DIR=str(self.dirs["data"]),
                   JUPYTER_RUNTIME_DIR=str(self.dirs["runtime"]), IPYTHONDIR=str(self.dirs["ipython"]))
        env.pop("JUPYTER_PATH", None)
        command = [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root",
                   "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={self.port}", "--ServerApp.port_retries=0",
                   f"--IdentityProvider.token={TOKEN}", f"--ServerApp.root_dir={self.dirs['root']}",
                   f"--LabApp.user_settings_dir={self.dirs['settings']}",
                   f"--LabApp.workspaces_dir={self.dirs['workspaces']}", "--LabApp.news_url=None",
                   "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
                   "--LabApp.extension_manager=readonly", "--expose-app-in-browser"]
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(command, cwd=self.dirs["root"], env=env, stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"JupyterLab exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                with urllib.request.urlopen(f"{self.base}/api/status?token={TOKEN}", timeout=2):
                    return
            except (OSError, urllib.error.HTTPError):
                time.sleep(0.2)
        raise TimeoutError(f"JupyterLab did not answer in 90 s:\n{self.tail()}")

    def tail(self, n: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:]) if self.log.exists() else ""

    def stop(self) -> list[int]:
        """SIGTERM the server (it shuts its kernels down), then SIGKILL whatever is left; the pids left."""
        if self.proc is None:
            return []
        try:
            procs = [psutil.Process(self.proc.pid), *psutil.Process(self.proc.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            procs = []
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        _, alive = psutil.wait_procs(procs, timeout=15)
        for p in alive:  # kernels run in a session of their own: not in the server's process group
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        _, alive = psutil.wait_procs(alive, timeout=5)
        self.proc.wait(timeout=5)
        return [p.pid for p in alive]


@pytest.fixture
def chromium():
    if not Path(CHROMIUM).exists():
        message = (f"Chromium not found at {CHROMIUM}: apt-get install chromium (or set CHROMIUM=/path). "
                   ".ci/run installs it.")
        if os.environ.get("DISTILFRAME_REQUIRE_BROWSER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return CHROMIUM


def test_run_panel_in_jupyterlab_in_headless_chromium(chromium, tmp_path):
    from playwright.sync_api import sync_playwright

    lab = Lab(tmp_path)
    outside: list[str] = []
    try:
        lab.start()
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
            try:
                context = browser.new_context(viewport={"width": 1280, "height": 1000})
                context.set_default_timeout(120_000)

                def local_only(route):  # nothing leaves the machine
                    if route.request.url.startswith((lab.base, "data:", "blob:")):
                        route.continue_()
                    else:
                        outside.append(route.request.url)
                        route.abort()

                context.route("**/*", local_only)
                page = context.new_page()
                try:
                    page.goto(f"{lab.base}/doc/tree/{NOTEBOOK.name}?token={TOKEN}")
                    page.wait_for_function(KERNEL_IDLE, arg=NOTEBOOK.name)
                    page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
                    page.locator(RUN).wait_for(state="visible")
                    page.wait_for_function("s => !document.querySelector(s).disabled", arg=RUN)
                    assert page.locator(PANEL).count() == 1
                    assert page.locator(BAR).evaluate("e => e.style.width") in ("", "0%")

                    page.evaluate(OBSERVE, [BAR])
                    page.locator(RUN).click()
                    page.wait_for_function(
                        "([m, r]) => document.querySelector(m).textContent.startsWith('Done')"
                        " && document.querySelectorAll(r).length === 5", arg=[MESSAGE, PREVIEW_ROWS])
                    page.wait_for_function("([r, s]) => !document.querySelector(r).disabled"
                                           " && document.querySelector(s).disabled", arg=[RUN, STOP])
                    assert page.locator(BAR).evaluate("e => e.style.width") == "100%"
                    assert f"{ROWS} / {ROWS} rows" in page.locator(PROGRESS_TEXT).inner_text()
                    assert f"Done: {ROWS} rows" in page.locator(MESSAGE).inner_text()
                    first = page.locator(PREVIEW_ROWS).first.locator("td").all_inner_texts()
                    assert "headphones" in first and any(cell.startswith("[") for cell in first), first
                    widths = page.evaluate("window.__widths")
                    assert widths and widths[-1] == "100%", widths

                    # the search box: type a query, press Enter, the nearest rows of the embedded column appear
                    page.locator(SEARCH).fill(QUERY)
                    page.locator(SEARCH).press("Enter")
                    page.wait_for_function("r => document.querySelectorAll(r).length === 5", arg=SEARCH_ROWS)
                    nearest = page.locator(SEARCH_ROWS).first.locator("td").all_inner_texts()
                    assert QUERY in nearest and "headphones" in nearest, nearest
                    assert "nearest rows" in page.locator(SEARCH_MESSAGE).inner_text()
                    page.locator(SEARCH_ROWS).last.scroll_into_view_if_needed()  # the run and the search
                    SCREENSHOT.parent.mkdir(exist_ok=True)
                    page.screenshot(path=str(SCREENSHOT))
                except BaseException:
                    page.screenshot(path=str(tmp_path / "failure.png"))
                    print(f"JupyterLab log:\n{lab.tail()}\nscreenshot: {tmp_path / 'failure.png'}", file=sys.stderr)
                    raise
            finally:
                browser.close()
    finally:
        leftover = lab.stop()
    assert not leftover, f"processes survived JupyterLab's shutdown: {leftover}"
    assert SCREENSHOT.stat().st_size > 10_000
    assert not outside, f"the page tried to reach the internet: {outside}"
