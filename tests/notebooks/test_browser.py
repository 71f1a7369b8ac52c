"""JupyterLab in a real browser, as a learner uses it: the server starts on localhost with a token, Playwright
drives Debian's Chromium (Playwright's own browser download cannot be reached offline), the launcher opens,
notebook 07 opens from the file browser, Run All Cells runs it through the UI with smoke parameters, and its
interactive form answers a slider. Every step leaves a screenshot in `runs/browser-tests/` (kept for a person to
look at); a step that fails names itself and its screenshot. Needs `chromium` on PATH (or `CHROMIUM=path`):
`.ci/run` installs it with apt when it is missing."""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import nbformat
import pytest
from papermill.iorw import load_notebook_node
from papermill.parameterize import parameterize_notebook

from helpers.decision import RECOMMENDATIONS
from helpers.workbook import NOTEBOOK_DIR, RUNS_DIR, load_preset

pytestmark = [pytest.mark.browser, pytest.mark.notebooks]
SCREENSHOTS = RUNS_DIR / "browser-tests"
NOTEBOOK = "07_decision.ipynb"
RUN_ALL_TIMEOUT_S = 420
# JupyterLab settings for a reproducible session: every cell attached to the page (the default windowing skips
# off-screen cells, which a screenshot or a query would then miss), and no request for news or updates.
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false", "checkForUpdates": False},
}


def chromium_path() -> str:
    path = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        pytest.fail(
            "no Chromium: install Debian's package (`apt-get install chromium`; .ci/run does it) or set "
            "CHROMIUM=/path/to/chromium. Deselect these tests with -m 'not browser'."
        )
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def lab_root(smoke_run, tmp_path_factory):
    """A folder holding notebook 07 as a learner would open it, its parameters set to the smoke preset and to
    the smoke run's work_dir (prepared data, fine-tuned model, rankings), so that Run All takes about a minute and
    shows what papermill's smoke run of 07 shows."""
    root = tmp_path_factory.mktemp("lab")
    notebook = load_notebook_node(str(NOTEBOOK_DIR / NOTEBOOK))
    parameters = {
        **load_preset("smoke")["07_decision"],
        "work_dir": str(smoke_run[0] / "work"),
        "output_dir": str(root / "06-output"),
    }
    nbformat.write(parameterize_notebook(notebook, parameters), root / NOTEBOOK)
    return root


@pytest.fixture(scope="module")
def lab_url(lab_root, tmp_path_factory):
    """`jupyter lab` on localhost with a token, isolated from the user's settings; always shut down."""
    home = tmp_path_factory.mktemp("jupyter-home")
    for name, values in LAB_SETTINGS.items():
        (home / "settings" / name).parent.mkdir(parents=True, exist_ok=True)
        (home / "settings" / name).write_text(json.dumps(values))
    token, port = os.urandom(16).hex(), free_port()
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(home / "config"),
        "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(home / "settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces"),
    }
    log = (home / "server.log").open("w")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyterlab",
            "--no-browser",
            "--allow-root",
            "--ip=127.0.0.1",
            f"--port={port}",
            f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={lab_root}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if server.poll() is not None:
                pytest.fail(f"jupyter lab exited with status {server.returncode}:\n{(home / 'server.log').read_text()}")
            try:
                urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"jupyter lab did not answer within 90 s:\n{(home / 'server.log').read_text()}")
                time.sleep(0.5)
        yield f"{base}/lab?token={token}"
    finally:
        try:  # shuts the kernels down with the server
            urllib.request.urlopen(
                urllib.request.Request(f"{base}/api/shutdown?token={token}", method="POST"), timeout=10
            )
            server.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            server.kill()
            server.wait()
        log.close()


@pytest.fixture(scope="module")
def page(lab_url):
    """One Chromium page for the module's steps, in order; the browser is always closed."""
    from playwright.sync_api import sync_playwright

    shutil.rmtree(SCREENSHOTS, ignore_errors=True)
    SCREENSHOTS.mkdir(parents=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(lab_url)
            yield page
        finally:
            browser.close()


@contextmanager
def step(page, name: str):
    """A named step of the learner's session: a screenshot after it, and on failure an error naming the step and
    the screenshot of the page as it was."""
    number = len(list(SCREENSHOTS.glob("*.png"))) + 1
    try:
        yield
    except Exception as error:
        shot = SCREENSHOTS / f"{number:02d}-{name}-FAILED.png"
        page.screenshot(path=shot)
        raise AssertionError(f"browser step '{name}' failed: {error}\nscreenshot: {shot}") from error
    page.screenshot(path=SCREENSHOTS / f"{number:02d}-{name}.png")


def notebook_state(page) -> dict:
    """What the open notebook shows: kernel status, prompts of the code cells, and the text of stderr outputs."""
    return page.evaluate("""() => {
        const panel = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)');
        const indicator = panel.querySelector('.jp-Notebook-ExecutionIndicator');
        return {
            kernel: indicator ? indicator.getAttribute('data-status') : null,
            prompts: [...panel.querySelectorAll('.jp-CodeCell .jp-InputPrompt')].map(p => p.textContent.trim()),
            stderr: [...panel.querySelectorAll('[data-mime-type="application/vnd.jupyter.stderr"]')].map(o => o.textContent),
            images: panel.querySelectorAll('.jp-OutputArea-output.jp-RenderedImage img').length,
            tables: panel.querySelectorAll('.jp-OutputArea-output.jp-RenderedHTMLCommon table').length,
        };
    }""")


def figures_and_tables(executed: Path) -> tuple[int, int]:
    """The figures (PNG outputs) and HTML tables in a notebook executed by papermill."""
    outputs = [
        output.get("data", {})
        for cell in nbformat.read(executed, as_version=4).cells
        for output in cell.get("outputs", [])
    ]
    return sum("image/png" in data for data in outputs), sum("<table" in data.get("text/html", "") for data in outputs)


@pytest.fixture(scope="module")
def ran_all_cells(page) -> dict:
    """The learner's way in: the launcher, notebook 07 opened from the file browser, Run > Run All Cells, and a
    wait until the kernel is idle with no cell queued; what the notebook then shows."""
    with step(page, "launcher"):
        page.locator(".jp-Launcher").wait_for(timeout=60_000)
        page.locator(".jp-LauncherCard", has_text="Python 3").first.wait_for()
    with step(page, "open-from-file-browser"):
        page.locator(".jp-DirListing-item", has_text=NOTEBOOK).dblclick()
        page.locator(".jp-StatusBar-Widget", has_text="Python 3 (ipykernel) | Idle").wait_for(timeout=60_000)
    with step(page, "run-all-cells"):
        page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
        page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
        deadline = time.monotonic() + RUN_ALL_TIMEOUT_S
        while (
            (state := notebook_state(page))["kernel"] != "idle"
            or state["prompts"][0] == "[ ]:"
            or "[*]:" in state["prompts"]
        ):
            assert time.monotonic() < deadline, f"the notebook was still running after {RUN_ALL_TIMEOUT_S} s"
            page.wait_for_timeout(1_000)
    return state


def test_every_cell_of_notebook_07_runs_in_jupyterlab(page, ran_all_cells, lab_root, smoke_run):
    state = ran_all_cells
    with step(page, "no-errors"):
        tracebacks = [text[:400] for text in state["stderr"] if "Traceback (most recent call last)" in text]
        assert not tracebacks, f"a cell shows an error: {tracebacks[0]}"
        not_run = [i for i, prompt in enumerate(state["prompts"]) if not prompt[1:-2].isdigit()]
        assert not not_run, f"code cells {not_run} did not run (an error stops Run All): prompts {state['prompts']}"
        figures, tables = figures_and_tables(Path(smoke_run[1]["07_decision"]["executed"]))
        assert (state["images"], state["tables"]) == (figures, tables) and figures and tables, (
            f"{state['images']} figures and {state['tables']} tables shown; papermill's run of 07 has {figures} and {tables}"
        )
        page.keyboard.press("Control+s")
        page.locator(".lm-TabBar-tab:not(.jp-mod-dirty)", has_text=NOTEBOOK).wait_for(timeout=30_000)
        saved = [cell for cell in nbformat.read(lab_root / NOTEBOOK, as_version=4).cells if cell.cell_type == "code"]
        assert all(cell.execution_count for cell in saved), "the saved notebook has code cells that did not run"
        errors = [output for cell in saved for output in cell.outputs if output.output_type == "error"]
        assert not errors, f"the saved notebook holds an error: {errors[0].ename}: {errors[0].evalue}"
    with step(page, "figure"):
        page.locator(".jp-RenderedImage img").last.scroll_into_view_if_needed()


def changed_answer(page, answer, before: str) -> str:
    """The form's answer once it differs from `before` (the kernel answers each change of a control)."""
    page.wait_for_function(
        "([node, before]) => node.innerText !== before", arg=[answer.element_handle(), before], timeout=30_000
    )
    return answer.inner_text()


def test_the_decision_form_answers_its_controls(page, ran_all_cells):
    form = page.locator(".widget-vbox", has=page.locator(".widget-slider")).last
    answer = form.locator(".widget-html")
    target = form.locator(".widget-slider", has_text="target NDCG@10")
    corpus = form.locator(".widget-text", has_text="documents to reindex")
    with step(page, "form-renders"):
        form.scroll_into_view_if_needed()
        assert form.locator(".widget-slider").count() == 3 and corpus.count() == 1, (
            "the form shows 3 sliders and a number"
        )
        shown = answer.inner_text()
        # the smoke run's off-the-shelf test NDCG@10 (about 0.8) is above the default target of 0.60
        assert (
            shown.startswith("Use the off-the-shelf model (off-the-shelf)") and "already meets the target" in shown
        ), shown
    with step(page, "target-slider-moved"):
        target.locator(".noUi-handle").focus()
        page.keyboard.press("End")  # the slider's maximum
        shown = changed_answer(page, answer, shown)
        assert target.locator(".widget-readout").inner_text() == "1.00"
        assert "already meets the target" not in shown, f"a target of 1.00 is met by no model: {shown}"
        advice = shown.split("\n")[0]
        assert any(advice.endswith(f"({recommendation})") for recommendation in RECOMMENDATIONS), advice
    with step(page, "corpus-typed"):
        corpus.locator("input").fill("50000000")
        corpus.locator("input").press("Enter")
        shown = changed_answer(page, answer, shown)
        assert "Reindexing 50,000,000 documents" in shown, shown
